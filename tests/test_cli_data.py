"""edgefer data synth / inspect: output checks before any work, --exist-ok, -q, seed validation."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgefer.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_synth_out_with_any_suffix_is_a_file(tmp_path):
    out = tmp_path / "x.txt"
    result = run("data", "synth", "--out", out, "--n", 14, "-q")
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.read_text().startswith("emotion,pixels,Usage\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt", "x.txt.synthetic.json"]
    folder = tmp_path / "d"
    assert run("data", "synth", "--out", folder, "--n", 14).exit_code == 0
    assert (folder / "fer2013_synthetic.csv").is_file()


@pytest.mark.parametrize("make, args, message", [
    (lambda t: (t / "x.csv").write_text("old"), ["--out", "{t}/x.csv"],
     "--out {t}/x.csv: already exists; pass --exist-ok to replace it"),
    (lambda t: (t / "f").write_text("x"), ["--out", "{t}/f/x.csv"], "--out {t}/f/x.csv: {t}/f is a file, not a directory"),
    (lambda t: None, ["--out", "/sys/edgefer-test.csv"], "--out /sys/edgefer-test.csv: cannot write in /sys ("),
    (lambda t: None, ["--out", "{t}/y.csv", "--seed", "-1"],
     "--seed: must be an integer in [0, 4294967295], got -1"),
])
def test_synth_refuses_up_front(tmp_path, make, args, message):
    make(tmp_path)
    result = run("data", "synth", "--n", 7, *[a.format(t=tmp_path) for a in args])
    assert result.exit_code == 2
    assert result.output.startswith("edgefer: error: " + message.format(t=tmp_path))
    assert len(result.output.splitlines()) == 1
    assert not (tmp_path / "y.csv").exists()


def test_synth_exist_ok_replaces(tmp_path):
    out = tmp_path / "x.csv"
    out.write_text("old")
    result = run("data", "synth", "--out", out, "--n", 7, "--seed", 3, "--exist-ok")
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("emotion,pixels")


def test_inspect_manifest_checked_before_reading(tmp_path):
    csv = tmp_path / "s.csv"
    assert run("data", "synth", "--out", csv, "--n", 40).exit_code == 0
    manifest = tmp_path / "m.json"
    manifest.write_text("mine")
    result = run("data", "inspect", tmp_path / "missing.csv", "--manifest", manifest)
    assert result.exit_code == 2  # the output is checked first, before the (missing) data is read
    assert result.output == f"edgefer: error: --manifest {manifest}: already exists; pass --exist-ok to replace it\n"
    result = run("data", "inspect", csv, "--manifest", manifest, "--exist-ok", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["synthetic"] is True
    assert json.loads(manifest.read_text())["seed"] == 0


def test_inspect_file_names_that_are_not_utf8(tmp_path):
    """A bad image whose name is not UTF-8 is reported with \\xNN, also on a strict UTF-8 stdout (this was a
    UnicodeEncodeError traceback)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    Image = pytest.importorskip("PIL.Image")
    for split in ("train", "test"):
        for label in ("happy", "sad"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((48, 48), 40 * i, np.uint8)).save(tmp_path / split / label / f"{i}.png")
    bad = os.fsencode(tmp_path / "train" / "happy") + b"/caf\xe9.png"
    with open(bad, "wb") as f:
        f.write(b"not an image")
    shown = f"{tmp_path}/train/happy/caf\\xe9.png"
    code = "import sys; from edgefer.cli import main; main()"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": str(Path(__file__).parents[1])}
    for args, stream in ((["--skip-bad"], "stdout"), (["--skip-bad", "--json"], "stdout"), ([], "stderr")):
        done = subprocess.run([sys.executable, "-c", code, "data", "inspect", str(tmp_path), *args],
                              capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == (2 if not args else 0), done.stderr[-2000:]
        output = getattr(done, stream)
        if "--json" in args:
            assert json.loads(output)["bad"]["entries"][0]["file"] == shown
        else:
            assert shown in output and "Traceback" not in done.stderr
