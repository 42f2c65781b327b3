"""Runtime arguments of the wrong type: a detector returning None or broken boxes, a color that is not a
string, np.matrix input, a bytes path, a backend that is not a name: one InputError each (never a raw
TypeError / ValueError / OverflowError from deep inside)."""

from __future__ import annotations

import numpy as np
import pytest

from edgefer.errors import InputError
from edgefer.runtime import EmotionRecognizer
from tests.backends import needs_onnxruntime, needs_torch
from tests.runtime_models import shared_tiny

pytestmark = [needs_torch, needs_onnxruntime]
FRAME = np.full((64, 64), 128, np.uint8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def rec(tiny):
    return EmotionRecognizer.open(tiny.onnx, threads=1)


@pytest.mark.parametrize("detected, message", [
    (None, "the face detector returned NoneType; expected a list of (x, y, w, h) boxes (an empty list when there "
           "is no face)"),
    (5, "the face detector returned int"),
    ("0 0 40 40", "the face detector returned str"),
    ([(0, 0, float("nan"), 40)], "face detector box 0: [0.0, 0.0, nan, 40.0] has NaN or infinite values"),
    ([(0, 0, 40, 40), (0, 0, float("inf"), 1e400)], "face detector box 1: [0.0, 0.0, inf, inf] has NaN"),
    ([(0, 0, 40)], "face detector box 0: (0, 0, 40) is not 4 numbers (x, y, w, h)"),
    ([(0, 0, 40, 40, 1)], "face detector box 0: (0, 0, 40, 40, 1) is not 4 numbers"),
    ([("a", 0, 40, 40)], "face detector box 0: ('a', 0, 40, 40) is not 4 numbers"),
    ([None], "face detector box 0: None is not 4 numbers"),
    (np.zeros((1, 3)), "face detector box 0: array([0., 0., 0.]) is not 4 numbers"),
])
def test_a_broken_detector_result_is_one_input_error(rec, detected, message):
    with pytest.raises(InputError) as caught:
        rec.predict_frame(FRAME, detector=lambda frame: detected)
    assert str(caught.value) == message or str(caught.value).startswith(message), str(caught.value)


def test_detector_boxes_as_arrays_and_huge_finite_numbers_still_work(rec):
    assert len(rec.predict_frame(FRAME, detector=lambda f: np.array([[0, 0, 40, 40]], np.float32)).faces) == 1
    assert len(rec.predict_frame(FRAME, detector=lambda f: [(0, 0, 1e300, 1e300)]).faces) == 1  # clipped to the frame
    assert rec.predict_frame(FRAME, detector=lambda f: np.empty((0, 4))).faces == []


@pytest.mark.parametrize("color", [["bgr"], b"bgr", 3, None, {"bgr": 1}])
def test_a_color_that_is_not_a_name_is_one_input_error(rec, color):
    with pytest.raises(InputError, match=r"^color must be 'bgr', 'rgb' or 'gray', got "):
        rec.predict(np.zeros((48, 48), np.uint8), color=color)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")  # np.matrix on purpose
def test_np_matrix_is_one_gray_image(rec):
    face = np.random.default_rng(0).integers(0, 256, (48, 48)).astype(np.uint8)
    expected = rec.predict(face).probs
    assert np.array_equal(rec.predict(np.matrix(face)).probs, expected)
    assert np.array_equal(rec.predict([np.matrix(face), face]).probs, np.concatenate([expected, expected]))


@pytest.mark.parametrize("path, message", [
    (b"model.onnx", "model path must be a str or os.PathLike, got bytes (decode it: os.fsdecode(path))"),
    (5, "model path must be a str or os.PathLike, got int"),
    (None, "model path must be a str or os.PathLike, got NoneType"),
])
def test_a_model_path_of_the_wrong_type_is_one_input_error(path, message):
    with pytest.raises(InputError) as caught:
        EmotionRecognizer.open(path)
    assert str(caught.value) == message


@pytest.mark.parametrize("backend", [5, b"onnxruntime", ["onnxruntime"], True])
def test_a_backend_that_is_not_a_name_is_one_input_error(tiny, backend):
    with pytest.raises(InputError, match=r"^backend must be a name such as 'onnxruntime', 'openvino' or 'tensorrt'"):
        EmotionRecognizer.open(tiny.onnx, backend=backend)


@pytest.mark.parametrize("source", ["9", "missing-clip.mp4"])
def test_camera_example_that_cannot_open_its_source_says_so_in_one_line(tiny, source, tmp_path, capfd):
    """No usage block (the arguments were fine) and no OpenCV log lines ([ WARN:0@...] cap_v4l.cpp ...)."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("cv2")
    script = Path(__file__).resolve().parents[1] / "examples" / "camera_app.py"
    done = subprocess.run([sys.executable, str(script), "--model", str(tiny.onnx), "--source", source, "--out", ""],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"camera_app: error: cannot open {source!r} (no such camera or video file, "
                                        "or no codec for it)"]


@pytest.mark.parametrize("threads", [10**9, 1025, True, 1.5, "2"])
def test_thread_counts_a_runtime_cannot_allocate_are_refused(tiny, threads):
    """Found by the runtime-args fuzz target: threads=10**9 was std::bad_alloc (MemoryError) inside ONNX Runtime."""
    from edgefer.errors import ModelError

    with pytest.raises(ModelError, match=r"threads must be a positive integer \(at most 1024\), got "):
        EmotionRecognizer.open(tiny.onnx, threads=threads)
