"""edgefer predict: outputs checked up front, the no-face hint, file names that are not UTF-8, interruption
(Ctrl-C / SIGTERM) keeping a playable video and the JSON lines so far."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgefer.cli import main
from tests.backends import needs_cv2, needs_onnxruntime, needs_openvino, needs_torch
from tests.cli_models import tiny_models

LATIN1_NAME = os.fsdecode(b"caf\xe9")  # not valid UTF-8: Python keeps the byte as a surrogate escape


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny():
    return tiny_models().exported


def _video(path: Path, frames: int, size=(64, 48)) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), (7 * i) % 256, np.uint8))
    writer.release()
    return path


def _frame_count(path: Path) -> int:
    import cv2

    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count


def test_outputs_checked_before_the_model_is_opened(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    video = tmp_path / "v.avi"
    video.write_bytes(b"x")
    taken = tmp_path / "taken.jsonl"
    taken.write_text("mine")
    missing_model = tmp_path / "m.onnx"
    cases = [
        (["predict", image, "-m", missing_model, "--jsonl", taken],
         f"--jsonl {taken}: already exists; pass --exist-ok to replace it"),
        (["predict", image, "-m", missing_model, "--jsonl", tmp_path],
         f"predict: Invalid value for '--jsonl': File '{tmp_path}' is a directory."),
        (["predict", video, "-m", missing_model, "--annotate", image],
         f"--annotate {image}: already exists; pass --exist-ok to replace it"),
        (["predict", image, "-m", missing_model, "--jsonl", "/sys/out.jsonl"],
         "--jsonl /sys/out.jsonl: cannot write in /sys ("),
        (["predict", image, "-m", missing_model, "--sidecar", tmp_path / "spec.json"],
         f"predict: Invalid value for '--sidecar': File '{tmp_path / 'spec.json'}' does not exist."),
        (["predict", image, "-m", missing_model, "--threads", "0"],
         "--threads: must be an integer in [1, 4096], got 0"),
        (["predict", image, "-m", missing_model, "--precision", "f64"],
         "predict: Invalid value for '--precision': 'f64' is not one of "),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("edgefer: error: " + message) and len(result.output.splitlines()) == 1
    assert taken.read_text() == "mine"


@needs_cv2
@needs_torch
@needs_onnxruntime
@needs_openvino
def test_no_face_found_is_said_with_the_fix(tiny, tmp_path):
    import cv2

    rng = np.random.default_rng(1)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    result = run("predict", tmp_path, "-m", tiny.onnx)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == (
        "edgefer: 3 record(s), 0 unreadable; no face found in 3/3 images; for face crops use --no-detect")
    result = run("predict", tmp_path, "-m", tiny.onnx, "--no-detect", "-q")
    assert result.exit_code == 0 and result.stderr == ""  # -q: results only
    from edgefer.runtime import EmotionRecognizer

    with EmotionRecognizer.open(tiny.xml) as deployed:  # the summary names the precision OpenVINO executed
        executed = deployed.backend.precision
    result = run("predict", tmp_path, "-m", tiny.xml, "--no-detect")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == f"edgefer: 3 record(s), 0 unreadable; OpenVINO computed in {executed} on CPU"
    assert [json.loads(line)["label"] for line in result.stdout.splitlines()]


@needs_cv2
@needs_torch
@needs_onnxruntime
@needs_openvino
def test_file_names_that_are_not_utf8(tiny, tmp_path):
    """OpenCV segfaulted on such names; predict reads the bytes itself and prints the name with \\xNN."""
    import cv2

    folder = tmp_path / LATIN1_NAME
    folder.mkdir()
    ok, png = cv2.imencode(".png", np.random.default_rng(2).integers(0, 256, (48, 48), dtype=np.uint8))
    (folder / f"{LATIN1_NAME}.png").write_bytes(png.tobytes())
    (folder / "plain.png").write_bytes(png.tobytes())
    (folder / "zz-broken.png").symlink_to(tmp_path / "missing.png")  # bad entries, counted, never dropped
    (folder / "zz-loop.png").symlink_to(folder / "zz-loop.png")
    video = _video(tmp_path / "plain.avi", 3).rename(tmp_path / f"{LATIN1_NAME}.avi")  # never give OpenCV the name
    annotated = tmp_path / f"{LATIN1_NAME}-out.avi"
    jsonl = tmp_path / f"{LATIN1_NAME}.jsonl"
    code = "import sys; from edgefer.cli import main; main()"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code, "predict", str(folder), "-m", str(tiny.onnx), "--no-detect",
                           "--jsonl", str(jsonl)], capture_output=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    shown = str(tmp_path)
    assert [r["source"] for r in rows] == [f"{shown}/caf\\xe9/{name}" for name in ("caf\\xe9.png", "plain.png",
                                                                                "zz-broken.png", "zz-loop.png")]
    assert rows[0]["label"] == rows[1]["label"] and rows[0]["probs"] == rows[1]["probs"]
    assert rows[2]["error"] == rows[3]["error"] == "a symbolic link to a missing file (or a link loop)"
    assert done.stderr.decode().splitlines()[-1].startswith("edgefer: 4 record(s), 2 unreadable")
    done = subprocess.run([sys.executable, "-c", code, "predict", str(video), "-m", str(tiny.onnx), "--no-detect",
                           "--annotate", str(annotated)], capture_output=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [r["frame"] for r in rows] == [0, 1, 2] and rows[0]["source"] == f"{shown}/caf\\xe9.avi"
    assert _frame_count(annotated.rename(tmp_path / "out.avi")) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@needs_cv2
@needs_torch
@needs_onnxruntime
@needs_openvino
def test_ctrl_c_keeps_a_playable_video_and_the_lines_so_far(tiny, tmp_path, monkeypatch):
    from edgefer.runtime import EmotionRecognizer

    video = _video(tmp_path / "clip.avi", 8)
    calls = {"n": 0}
    original = EmotionRecognizer.predict

    def predict_then_interrupt(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EmotionRecognizer, "predict", predict_then_interrupt)
    annotated, jsonl = tmp_path / "out.avi", tmp_path / "out.jsonl"
    result = run("predict", video, "-m", tiny.onnx, "--no-detect", "--annotate", annotated, "--jsonl", jsonl)
    assert result.exit_code == 0, result.output
    assert "edgefer: interrupted; kept what was written" in result.stderr
    assert [json.loads(line)["frame"] for line in jsonl.read_text().splitlines()] == [0, 1, 2]
    assert _frame_count(annotated) == 3


@needs_cv2
@needs_torch
@needs_onnxruntime
@needs_openvino
def test_sigterm_keeps_a_playable_video(tiny, tmp_path):
    video = _video(tmp_path / "long.avi", 2000, size=(32, 24))
    annotated = tmp_path / "out.avi"
    code = "import sys; from edgefer.cli import main; main()"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", code, "predict", str(video), "-m", str(tiny.onnx),
                             "--no-detect", "--annotate", str(annotated)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = [proc.stdout.readline() for _ in range(5)]  # five frames predicted and written
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "edgefer: interrupted; kept what was written" in err
    written = len(lines) + len(out.splitlines())
    assert 5 <= written < 2000 and _frame_count(annotated) == written
