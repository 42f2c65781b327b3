"""Shared CLI options and output handling: verbosity levels, up-front output checks, whole-directory publish."""

import os

import click
import pytest
from click.testing import CliRunner

from edgefer import logs
from edgefer.cli.options import exist_ok_option, verbosity_options
from edgefer.errors import UsageError
from edgefer.fileio import check_output, remove_stale_stages, staged_dir


def test_verbosity_options_set_the_level():
    seen = []

    @click.command()
    @verbosity_options
    @exist_ok_option
    def cmd(exist_ok):
        seen.append((logs.verbosity(), exist_ok))

    for args, want in (([], (logs.NORMAL, False)), (["-q"], (logs.QUIET, False)),
                       (["--verbose", "--exist-ok"], (logs.VERBOSE, True))):
        logs.set_verbosity(logs.NORMAL)
        assert CliRunner().invoke(cmd, args).exit_code == 0
        assert seen[-1] == want
    logs.set_verbosity(logs.NORMAL)


def test_check_output_refuses_before_any_work(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").write_text("x")
    cases = [
        ((tmp_path / "file.txt", "dir"), "exists and is not a directory"),
        ((tmp_path / "full", "file"), "is a directory; give a file name"),
        ((tmp_path / "full", "dir"), "already exists; pass --exist-ok to replace it"),
        ((tmp_path / "file.txt" / "sub", "dir"), "is not a directory"),
    ]
    for (path, kind), message in cases:
        with pytest.raises(UsageError, match=message):
            check_output(path, kind)
    assert check_output(tmp_path / "full", "dir", exist_ok=True) == tmp_path / "full"
    assert check_output(tmp_path / "new" / "deeper", "dir") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_staged_dir_publishes_whole_and_carries_kept_files(tmp_path):
    out = tmp_path / "out"
    with staged_dir(out) as stage:
        (stage / "model.xml").write_text("old xml")
        (stage / "model.bin").write_text("old bin")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        with staged_dir(out) as stage:
            (stage / "model.xml").write_text("new xml")
            raise RuntimeError("killed half-way")
    assert (out / "model.xml").read_text() == "old xml"  # the failed run changed nothing
    with staged_dir(out, keep=lambda name: name == "notes.txt") as stage:
        (stage / "model.xml").write_text("new xml")
    assert sorted(os.listdir(out)) == ["model.xml", "notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no staging directory left behind


def test_stale_stages_of_killed_runs_are_removed_or_restored(tmp_path):
    out = tmp_path / "out"
    dead = tmp_path / ".out.stage-999999999-abc"
    dead.mkdir()
    aside = tmp_path / ".out.stage-999999998-def.old"  # a run killed between its two renames
    aside.mkdir()
    (aside / "model.xml").write_text("old")
    remove_stale_stages(out)
    assert not dead.exists()
    assert (out / "model.xml").read_text() == "old"


@pytest.mark.parametrize("args", [
    ["data", "synth", "--n", "5", "--out", "{out}"],
    ["data", "inspect", "{csv}", "--manifest", "{out}"],
    ["predict", "{csv}", "-m", "{t}/m.onnx", "--jsonl", "{out}"],
    ["eval", "--model", "{t}/run", "--json", "{out}"],
])
@pytest.mark.parametrize("node", ["/dev/null", "fifo"])
def test_device_or_fifo_outputs_are_refused_even_with_exist_ok(args, node, tmp_path):
    from edgefer.cli import main

    out = tmp_path / "fifo" if node == "fifo" else node
    if node == "fifo":
        os.mkfifo(out)
    (tmp_path / "x.csv").write_text("emotion,pixels,Usage\n")
    argv = [a.format(out=out, csv=tmp_path / "x.csv", t=tmp_path) for a in args]
    result = CliRunner().invoke(main, [*argv, "--exist-ok"])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        f"edgefer: error: {args[args.index('{out}') - 1]} {out}: is not a regular file (a device, FIFO or socket); "
        "outputs are only written as regular files"]
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    if node == "fifo":
        assert not os.path.isfile(out)  # still the FIFO


def _full_disk(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_one_line_naming_the_path_and_nothing_is_left(tmp_path, monkeypatch):
    import io
    from pathlib import Path

    import edgefer.data.synth
    from edgefer.cli import main

    runner = CliRunner()
    csv = tmp_path / "x.csv"
    assert runner.invoke(main, ["data", "synth", "--out", str(csv), "--n", "20"]).exit_code == 0
    before = sorted(p.name for p in tmp_path.iterdir())

    class FullFile(io.StringIO):  # a file whose data never fits
        write = staticmethod(_full_disk)

    monkeypatch.setattr(edgefer.data.synth, "open", lambda *a, **k: FullFile(), raising=False)
    result = runner.invoke(main, ["data", "synth", "--out", str(csv), "--n", "20", "--seed", "1", "--exist-ok"])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        f"edgefer: error: {csv}: cannot write (No space left on device); nothing was written there"]
    monkeypatch.undo()

    monkeypatch.setattr(Path, "write_bytes", _full_disk)
    manifest = tmp_path / "splits.json"
    result = runner.invoke(main, ["data", "inspect", str(csv), "--manifest", str(manifest)])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        f"edgefer: error: {manifest}: cannot write (No space left on device); nothing was written there"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary file, no manifest, the CSV kept


def test_a_write_error_without_a_writer_that_names_it_is_still_one_line(monkeypatch, tmp_path):
    import edgefer.data
    from edgefer.cli import main

    monkeypatch.setattr(edgefer.data, "synthesize", _full_disk)
    result = CliRunner().invoke(main, ["data", "synth", "--out", str(tmp_path / "x.csv"), "--n", "5"])
    assert result.exit_code == 2
    assert result.output.splitlines() == ["edgefer: error: No space left on device"]
