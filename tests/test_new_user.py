"""Surprises a new user met: a run's data path given relative to the folder training ran in, --exist-ok
deleting unrelated files of an output folder."""

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from tests.backends import needs_torch

TINY = ["--arch", "test_efficientnet", "--img-size", "16", "--batch-size", "16", "--threads", "1",
        "--limit-train", "64", "--max-steps", "2", "--epochs", "1", "-q"]


def _cli(*args):
    from edgefer.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_exist_ok_replaces_what_the_command_wrote_and_keeps_the_rest(tmp_path):
    from edgefer.fileio import staged_dir

    out = tmp_path / "export"
    (out / "triton" / "1").mkdir(parents=True)
    for name in ("model.onnx", "model.int8.xml", "triton/1/model.onnx", "notes.txt", "my_script.py"):
        (out / name).write_text("old")
    (out / "export.json").write_text(json.dumps({"files": [{"path": "model.onnx"}, {"path": "model.int8.xml"},
                                                           {"path": "triton/1/model.onnx"}]}))
    with staged_dir(out) as stage:
        (stage / "export.json").write_text(json.dumps({"files": [{"path": "model.fp16.onnx"}]}))
        (stage / "model.fp16.onnx").write_text("new")
    # the old export's files are gone (a stale INT8 IR beside a new FP16 export would mislead), the user's kept
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.fp16.onnx", "my_script.py", "notes.txt"]
    assert (out / "notes.txt").read_text() == "old"
    assert not [p for p in tmp_path.iterdir() if p.name != "export"]  # no staging leftovers
    with staged_dir(out, keep=None) as stage:  # keep=None: nothing carried over
        (stage / "bench.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["bench.json"]


def test_calibrate_exist_ok_keeps_files_the_user_put_there(fer_csv, tmp_path):
    out = tmp_path / "calib"
    args = ["calibrate", "--data", fer_csv, "--out", out, "--calib-size", "16", "-q"]
    assert _cli(*args).exit_code == 0
    (out / "README.txt").write_text("bundle for the Jetson")
    before = (out / "calib.npz").read_bytes()
    result = _cli(*args, "--calib-seed", "3", "--exist-ok")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "calib.npz", "manifest.json"]
    assert (out / "calib.npz").read_bytes() != before


@pytest.fixture(scope="module")
def relative_run(fer_csv, tmp_path_factory):
    """A run trained from folder `a` on `data/faces.csv`, given relative to `a`."""
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("new-user")
    (root / "a" / "data").mkdir(parents=True)
    shutil.copy(fer_csv, root / "a" / "data" / "faces.csv")
    shutil.copy(f"{fer_csv}.synthetic.json", root / "a" / "data" / "faces.csv.synthetic.json")
    cwd = os.getcwd()
    os.chdir(root / "a")
    try:
        result = _cli("train", "--data", "data/faces.csv", "--out", "run", *TINY)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    return root


@needs_torch
def test_eval_from_another_folder_uses_the_data_training_read(relative_run, monkeypatch):
    root = relative_run
    (root / "b" / "data").mkdir(parents=True)
    from edgefer.data import synthesize, write_fer_csv

    write_fer_csv(root / "b" / "data" / "faces.csv", synthesize(100, seed=5))  # same relative name, other data
    monkeypatch.chdir(root / "b")
    result = _cli("eval", "--model", root / "a" / "run", "--json", "e.json", "--batch-size", "64", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((root / "b" / "e.json").read_text())["data"] == str(root / "a" / "data" / "faces.csv")


@needs_torch
def test_training_data_that_is_gone_is_one_line_naming_where_it_was(relative_run, monkeypatch, tmp_path):
    root = relative_run
    run = tmp_path / "run"
    shutil.copytree(root / "a" / "run", run)
    meta = json.loads((run / "model.json").read_text())
    meta["data"]["source_abs"] = str(tmp_path / "gone" / "faces.csv")
    (run / "model.json").write_text(json.dumps(meta))
    monkeypatch.chdir(tmp_path)
    result = _cli("eval", "--model", run, "--json", "e.json")
    assert result.exit_code == 2
    assert result.output == (f"edgefer: error: the data this model was trained on, {tmp_path}/gone/faces.csv (given "
                             "as data/faces.csv where training ran), is not there any more; pass --data\n")


@needs_torch
def test_qat_from_another_folder_uses_the_runs_data_writes_model_int8_xml_and_keeps_user_files(relative_run,
                                                                                               monkeypatch):
    pytest.importorskip("modelopt.torch.quantization")
    pytest.importorskip("openvino")
    from edgefer.data import synthesize, write_fer_csv

    root = relative_run
    (root / "q" / "data").mkdir(parents=True)
    write_fer_csv(root / "q" / "data" / "faces.csv", synthesize(100, seed=5))  # same relative name, other data
    monkeypatch.chdir(root / "q")
    args = ["qat", "--from", root / "a" / "run", "--out", "qat", "--epochs", "1", "--limit-train", "32",
            "--calib-size", "16", "--threads", "1", "-q"]
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    out = root / "q" / "qat"
    trained_on = json.loads((root / "a" / "run" / "model.json").read_text())["data"]["fingerprint"]
    record = json.loads((out / "qat.json").read_text())
    assert record["calibration"]["data_fingerprint"] == trained_on  # the data training read, not ./data/faces.csv
    assert (out / "model.int8.xml").is_file() and not list(out.glob("model_int8*"))  # the name export uses
    (out / "notes.txt").write_text("mine")
    result = _cli(*args, "--exist-ok")
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.int8.xml").is_file()
