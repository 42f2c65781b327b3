"""A full disk while any command writes: one line naming the path, exit 2, nothing half-published (no output,
no temporary or staging file left beside it).

Two ways to fill the disk: every publishing rename (``os.replace``) fails with ENOSPC, or RLIMIT_FSIZE makes
every write past a few hundred bytes fail (EFBIG), whoever writes (numpy, onnx, OpenVINO's C++ serializer,
matplotlib, safetensors)."""

import errno
import os
import resource
import signal
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from tests.backends import needs_torch

pytestmark = needs_torch

TINY = ["--arch", "test_efficientnet", "--img-size", "16", "--batch-size", "16", "--threads", "1",
        "--limit-train", "64", "--max-steps", "2", "--epochs", "1", "-q"]
LIMIT = 200  # bytes any file may grow to while the disk is "full"


def _cli(*args):
    from edgefer.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(fer_csv, tmp_path_factory):
    run = tmp_path_factory.mktemp("full") / "run"
    result = _cli("train", "--data", fer_csv, "--out", run, *TINY)
    assert result.exit_code == 0, result.output
    import matplotlib.pyplot  # noqa: F401  (its font cache is written on first import, not while the disk is full)
    return run


@pytest.fixture
def face(tmp_path_factory, fer_csv):
    from PIL import Image

    from edgefer.data import load

    folder = tmp_path_factory.mktemp("faces")
    for i, image in enumerate(load(fer_csv)["train"].images[:3]):
        Image.fromarray(image).save(folder / f"{i}.png")
    return folder


def _video(path):
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(4):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    return path


def _commands(run, fer_csv, faces, out):
    """(name, argv, the output path) of every command that writes files (``serve`` writes none: it answers over
    HTTP; stdout on a full device: tests/test_odd_inputs.py)."""
    onnx = out.parent / "in" / "model.onnx"
    export = ["export", "--model", run, "--out", out / "x", "-q", "--target"]
    return {
        "data synth": (["data", "synth", "--out", out / "x.csv", "--n", "20"], out / "x.csv"),
        "data inspect --manifest": (["data", "inspect", fer_csv, "--manifest", out / "m.json"], out / "m.json"),
        "train": (["train", "--data", fer_csv, "--out", out / "run", *TINY], out / "run"),
        "eval --json": (["eval", "--model", run, "--json", out / "e.json", "--batch-size", "64"], out / "e.json"),
        "calibrate": (["calibrate", "--data", fer_csv, "--out", out / "calib", "--calib-size", "16"], out / "calib"),
        "export": (["export", "--model", run, "--target", "openvino", "--out", out / "ov", "-q"], out / "ov"),
        "export onnx": ([*export, "onnx"], out / "x"),
        "export tensorrt": ([*export, "tensorrt"], out / "x"),
        "export deepstream": ([*export, "deepstream"], out / "x"),
        "export triton": ([*export, "triton"], out / "x"),
        "eval (into the run)": (["eval", "--model", out / "run", "--split", "test", "--exist-ok", "--batch-size", "64"],
                                out / "run" / "eval_test.json"),
        "build-engine": (["build-engine", onnx, "--fp16", "--out", out / "m.engine"], out / "m.engine"),
        "bench": (["bench", "--model", run, "--data", fer_csv, "--out", out / "bench", "--targets", "onnx",
                   "--iters", "2", "--warmup", "1", "--batch", "1", "--threads", "1", "--limit", "32"],
                  out / "bench"),
        "qat": (["qat", "--from", run, "--out", out / "qat", "--epochs", "1", "--limit-train", "32",
                 "--calib-size", "16", "--threads", "1", "--no-openvino"], out / "qat"),
        "predict --jsonl": (["predict", faces, "--model", onnx, "--no-detect", "--jsonl", out / "p.jsonl"],
                            out / "p.jsonl"),
        "predict --annotate": (["predict", out.parent / "in" / "clip.avi", "--model", onnx, "--no-detect",
                                "--annotate", out / "a.avi"], out / "a.avi"),
    }


WRITING = ["data synth", "data inspect --manifest", "train", "eval --json", "eval (into the run)", "calibrate",
           "export", "export onnx", "export tensorrt", "export deepstream", "export triton", "build-engine", "bench",
           "qat", "predict --jsonl", "predict --annotate"]


def _snapshot(folder):
    return {p.relative_to(folder): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def test_every_command_that_writes_is_covered():
    """A new command (or export target) with an output must join the list above."""
    import click

    from edgefer.cli import COMMANDS, main

    assert set(COMMANDS) <= {name.split()[0] for name in WRITING} | {"info", "serve"}  # info, serve: no files
    export = main.get_command(click.Context(main), "export")
    targets = next(p for p in export.params if p.name == "target").type.choices
    assert set(targets) == {"openvino"} | {name.split()[1] for name in WRITING if name.startswith("export ")}


@pytest.fixture(scope="module")
def onnx_model(run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    result = _cli("export", "--model", run, "--target", "onnx", "--out", folder / "in", "-q")
    assert result.exit_code == 0, result.output
    return folder / "in" / "model.onnx"


class _FileSizeLimit:
    def __enter__(self):
        self.saved = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, self.saved[0][1]))

    def __exit__(self, *exc):
        resource.setrlimit(resource.RLIMIT_FSIZE, self.saved[0])
        signal.signal(signal.SIGXFSZ, self.saved[1])


@pytest.mark.parametrize("how", ["rename", "fsize"])
@pytest.mark.parametrize("command", WRITING)
def test_a_full_disk_is_one_line_exit_2_and_nothing_is_published(command, how, run, onnx_model, fer_csv, face,
                                                                 tmp_path, monkeypatch):
    import shutil

    if command == "qat":
        pytest.importorskip("modelopt.torch.quantization")
    if command == "build-engine":
        from tests.test_tensorrt_int8 import fake_builder_tensorrt

        monkeypatch.setitem(sys.modules, "tensorrt", fake_builder_tensorrt("10.8.0.43"))
        if how == "fsize":
            pytest.skip("the fake engine is 11 bytes")
    inputs = tmp_path / "in"
    shutil.copytree(onnx_model.parent, inputs)
    out = tmp_path / "out"
    out.mkdir()
    if command == "predict --annotate":
        _video(inputs / "clip.avi")
    if command == "eval (into the run)":  # the run's own evaluation is replaced (--exist-ok) or kept whole
        shutil.copytree(run, out / "run")
    before = _snapshot(out)
    argv, target = _commands(run, fer_csv, face, out)[command]
    argv = [*argv, "-q"]  # stderr: the error alone
    if how == "rename":
        real_replace = os.replace

        def full(src, dst, *args, **kwargs):
            if str(out) in os.fsdecode(dst):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", full)
        result = _cli(*argv)
        monkeypatch.setattr(os, "replace", real_replace)
    else:
        with _FileSizeLimit():
            result = _cli(*argv)
    # stdout may hold results computed before the write (eval's table), stderr a data warning (calibration floor)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("edgefer: warning: ")]
    if command == "bench":  # its row progress ("ONNX Runtime FP32 ...", "  ok") comes before the error
        lines = lines[-1:] if not [line for line in lines[:-1] if line.startswith(("edgefer:", "Traceback"))] else lines
    assert result.exit_code == 2, (result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("edgefer: error: "), lines
    why = "No space left on device" if how == "rename" else "File too large"
    assert f"cannot write ({why}); nothing was written there" in lines[0] and str(out) in lines[0], lines
    assert ".stage-" not in lines[0], lines  # names the output asked for, not a hidden staging folder
    if command == "eval (into the run)":
        assert target.exists()  # the earlier evaluation, unchanged (checked with the rest below)
    else:
        assert not target.exists()
    assert _snapshot(out) == before, sorted(set(_snapshot(out)) ^ set(before))  # no output, no temporary file
