"""Kills at any moment leave a complete old or a complete new artefact: `train --exist-ok` over a run,
`data synth` over a CSV; SIGTERM in train keeps the last finished epoch like Ctrl-C.

Each kill runs the command in a subprocess that SIGKILLs itself at the N-th rename of the files it publishes
(every atomic write and directory swap ends in one), so each point between two renames is hit."""

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.backends import needs_torch

KILLER = r"""
import os, signal, sys
from edgefer import fileio
target, kill_at, calls = os.environ["KILL_UNDER"], int(os.environ["KILL_AT"]), []

def counting(function):
    def wrapper(*args, **kwargs):
        if any(target in os.fsdecode(a) for a in args if isinstance(a, (str, bytes, os.PathLike))):
            calls.append(args)
            if len(calls) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return function(*args, **kwargs)
    return wrapper

os.replace, os.rename = counting(os.replace), counting(os.rename)
fileio._rename_exchange = counting(fileio._rename_exchange)
from edgefer.cli import main
try:
    main(sys.argv[1:])
finally:
    sys.stderr.write(f"renames: {len(calls)}\n")
"""

TINY = ["--arch", "test_efficientnet", "--img-size", "16", "--batch-size", "16", "--threads", "1",
        "--limit-train", "64", "--max-steps", "2", "--epochs", "1", "-q"]


def _cli(*args):
    from edgefer.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _killed_at(n: int, under: Path, *args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KILL_UNDER": str(under), "KILL_AT": str(n), "EDGEFER_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-c", KILLER, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _complete_run(run: Path) -> dict:
    """The run's config after checking that it is a whole checkpoint with a matching resumable state."""
    meta = json.loads((run / "model.json").read_text())
    assert meta["weights_sha256"] == _sha(run / "best.safetensors")
    state = json.loads((run / "last_state.json").read_text())
    assert state["tensors_sha256"] == _sha(run / "last_state.safetensors") and state["epoch"] >= 1
    assert meta["data"]["manifest_sha256"] == _sha(run / "splits.json")
    return json.loads((run / "config.json").read_text())


@pytest.fixture(scope="module")
def old_run(fer_csv, tmp_path_factory):
    pytest.importorskip("torch")
    run = tmp_path_factory.mktemp("old") / "run"
    result = _cli("train", "--data", fer_csv, "--out", run, "--seed", "1", *TINY)
    assert result.exit_code == 0, result.output
    (run / "notes.txt").write_text("mine")  # not a run file: --exist-ok keeps it
    return run


# the 17 renames of `train --exist-ok` over a run, in order: 9 atomic writes of the first epoch into the stage
# (config, splits, checkpoint, metrics, state), the swap (10), then the final evaluations and model.json (11-17);
# 1000 is after the end
@needs_torch
@pytest.mark.parametrize("kill_at", [1, 10, 11, 1000])
def test_train_exist_ok_killed_anywhere_leaves_the_old_or_the_new_run(old_run, fer_csv, tmp_path, kill_at):
    import shutil

    from edgefer.fileio import STAGE_MARK, remove_stale_stages

    run = tmp_path / "run"
    shutil.copytree(old_run, run)
    old_weights = _sha(run / "best.safetensors")
    done = _killed_at(kill_at, tmp_path, "train", "--data", fer_csv, "--out", run, "--seed", "2", "--exist-ok",
                      *TINY)
    assert done.returncode == (0 if kill_at == 1000 else -signal.SIGKILL), done.stderr
    config = _complete_run(run)
    if kill_at <= 10:  # before the swap: the old run, untouched
        assert config["seed"] == 1 and _sha(run / "best.safetensors") == old_weights
    else:
        assert config["seed"] == 2
    if kill_at == 1000:
        assert "renames: 17" in done.stderr
        assert (run / "eval_test.json").is_file()
    assert (run / "notes.txt").read_text() == "mine"
    remove_stale_stages(run)  # what the next run does first
    assert not [p for p in tmp_path.iterdir() if STAGE_MARK in p.name]
    assert _complete_run(run)["seed"] == config["seed"]


@needs_torch
def test_train_exist_ok_interrupted_before_the_first_epoch_keeps_the_old_run(old_run, fer_csv, tmp_path,
                                                                             monkeypatch):
    import shutil

    from edgefer.train import loop

    run = tmp_path / "run"
    shutil.copytree(old_run, run)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_train_epoch", interrupt)
    result = _cli("train", "--data", fer_csv, "--out", run, "--seed", "2", "--exist-ok", *TINY[:-1])
    assert result.exit_code == 130
    assert f"{run} keeps the previous run" in result.output
    assert _complete_run(run)["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the stage is gone


@needs_torch
def test_sigterm_in_train_keeps_the_last_finished_epoch_like_ctrl_c(monkeypatch, fer_csv, tmp_path):
    from edgefer.train import loop

    run = tmp_path / "run"
    original, calls = loop._train_epoch, []

    def terminated_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "_train_epoch", terminated_in_second_epoch)
    options = [*TINY[:-5], "--data", fer_csv]  # no --max-steps / --epochs / -q
    result = _cli("train", "--out", run, "--epochs", "2", *options)
    assert result.exit_code == 143, result.output
    assert f"terminated (SIGTERM) at step 4; epoch 1 is saved in {run}: continue with `edgefer train --resume " \
           f"{run}`" in result.output
    assert "Traceback" not in result.output
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    monkeypatch.setattr(loop, "_train_epoch", original)
    result = _cli("train", "--resume", run, "-q")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def _inspect(path):
    return _cli("data", "inspect", path, "--json")


@pytest.mark.parametrize("old_kind, kill_at", [("synthetic", 1), ("synthetic", 2), ("real", 2), ("synthetic", 1000)])
def test_data_synth_killed_between_its_two_renames_is_never_read_as_the_wrong_data(tmp_path, kill_at, old_kind):
    """Two renames publish the marker, then the CSV: a kill before both keeps the old pair, after both gives
    the new pair, and between them the marker names another CSV: readers say so instead of accepting it."""
    from edgefer.data import synthesize, write_fer_csv

    csv = tmp_path / "faces.csv"
    old = synthesize(30, seed=1)
    if old_kind == "real":
        old.synthetic = False
    write_fer_csv(csv, old)
    before = csv.read_bytes()
    done = _killed_at(kill_at, tmp_path, "data", "synth", "--out", csv, "--n", "40", "--seed", "2", "--exist-ok")
    assert done.returncode == (0 if kill_at == 1000 else -signal.SIGKILL), done.stderr
    result = _inspect(csv)
    if kill_at == 1:
        assert csv.read_bytes() == before and result.exit_code == 0, result.output
        assert json.loads(result.output)["synthetic"] is (old_kind == "synthetic")
    elif kill_at == 2:  # the new marker beside the old CSV
        assert csv.read_bytes() == before
        assert result.exit_code == 2 and len(result.output.splitlines()) == 1
        assert result.output.startswith(f"edgefer: error: {csv}: does not match its synthetic-data marker "
                                        "faces.csv.synthetic.json (sha256 differs")
    else:
        assert result.exit_code == 0 and json.loads(result.output)["synthetic"] is True
        assert sum(s["n"] for s in json.loads(result.output)["splits"].values()) == 40
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))  # a kill leaves a .tmp
    assert visible == ["faces.csv", "faces.csv.synthetic.json"][:1 if (old_kind == "real" and kill_at == 1) else 2]


def test_a_csv_replaced_after_synth_is_a_clear_error_and_a_broken_marker_too(tmp_path):
    csv = tmp_path / "faces.csv"
    assert _cli("data", "synth", "--out", csv, "--n", "20").exit_code == 0
    csv.write_text(csv.read_text().replace("\n0,", "\n1,", 1))  # edited by hand: no longer what was drawn
    result = _inspect(csv)
    assert result.exit_code == 2 and "does not match its synthetic-data marker" in result.output
    (tmp_path / "faces.csv.synthetic.json").write_text("[1, 2]")
    result = _inspect(csv)
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1
    assert "synthetic-data marker of faces.csv is not a JSON object" in result.output
    (tmp_path / "faces.csv.synthetic.json").write_text('{"synthetic": true}')  # old markers name no CSV
    assert _inspect(csv).exit_code == 0


def test_data_synth_whose_csv_cannot_be_published_keeps_the_old_marker(tmp_path, monkeypatch):
    import errno

    csv = tmp_path / "faces.csv"
    assert _cli("data", "synth", "--out", csv, "--n", "20", "--seed", "1").exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_replace = os.replace

    def full_on_the_csv(src, dst, *args, **kwargs):
        if str(dst) == str(csv):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_on_the_csv)
    result = _cli("data", "synth", "--out", csv, "--n", "30", "--seed", "2", "--exist-ok")
    monkeypatch.setattr(os, "replace", real_replace)
    assert result.exit_code == 2 and result.output.startswith(f"edgefer: error: {csv}: cannot write (No space")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert _inspect(csv).exit_code == 0
