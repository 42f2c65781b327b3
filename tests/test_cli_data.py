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
    (lambda t: (t / "f").write_text("x"), ["--out", "{t}/f/x.csv"], "--out {t}/f/x.csv: {t}/f is not a directory"),
    (lambda t: None, ["--out", "/sys/edgefer-test.csv"], "--out /sys/edgefer-test.csv: cannot write in /sys ("),
    (lambda t: None, ["--out", "{t}/y.csv", "--seed", "-1"],
     "data synth: Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295."),
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
