"""Bad input to EmotionRecognizer.predict / predict_frame: one InputError per case, naming what is wrong,
before anything reaches the inference runtime (never a traceback, a NaN probability or a wrong face count)."""

from __future__ import annotations

import numpy as np
import pytest

from edgefer.errors import InputError
from edgefer.runtime import EmotionRecognizer
from tests.backends import needs_onnxruntime, needs_torch
from tests.runtime_models import shared_tiny

pytestmark = [needs_torch, needs_onnxruntime]
FACE = np.full((48, 48), 128, np.uint8)


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    tiny = shared_tiny(tmp_path_factory)
    return EmotionRecognizer.open(tiny.onnx, threads=1, detector=lambda frame: [(0, 0, 40, 40)])


@pytest.mark.parametrize("faces, message", [
    ([FACE, [[1, 2], [3]]], r"faces[1]: not an image array (list: "),
    ([FACE, [[1, 2], [3, "x"]]], "faces[1]: dtype <U"),
    (np.full((48, 48), 300.0), "image: float pixel values must lie in 0..255, got 300..300 (scale 0..1 images by 255"),
    (np.stack([np.zeros((48, 48)), np.full((48, 48), -0.5)]), "faces[1]: float pixel values must lie in 0..255, "
                                                                 "got -0.5..-0.5"),
    (np.full((48, 48), np.inf, np.float32), "image: contains NaN or infinite values"),
    ([FACE, np.full((20, 20), np.nan)], "faces[1]: contains NaN or infinite values"),
    (np.zeros((48, 48, 2), np.uint8), "image: 2 channels (gray + alpha?), shape (48, 48, 2); expected 1 or 3 channels: "
                                      "drop the alpha channel (img[..., 0])"),
    (np.zeros((48, 48, 4), np.uint8), "image: 4 channels (BGRA/RGBA?), shape (48, 48, 4)"),
    (np.zeros((3, 48, 48), np.uint8), "shape (3, 48, 48) is ambiguous: a channels-first (C, H, W) image or 3 gray "
                                      "faces? Pass an image as (H, W, 3) (img.transpose(1, 2, 0)), or 3 faces as a "
                                      "list or (3, H, W, 1)"),
    (np.zeros((2, 3, 48, 48), np.uint8), "faces[0]: 48 channels; expected 1 (gray) or 3 (BGR/RGB), shape (3, 48, 48) "
                                         "(channels first? use img.transpose(1, 2, 0))"),
    (np.zeros((48, 48), np.complex64), "image: dtype complex64 not supported"),
    ([FACE, "face.png"], r"faces[1]: expected (H, W) or (H, W, C), got shape ()"),
    ({"a": 1}, "image: not an image array (got a dict)"),
    ("face.png", "expected an image (H, W[, C]) or a batch (N, H, W[, C]); got shape ()"),
])
def test_predict_refuses(rec, faces, message):
    with pytest.raises(InputError) as err:
        rec.predict(faces)
    assert message in str(err.value)


def test_predict_frame_refuses_a_list(rec):
    with pytest.raises(InputError, match=r"predict_frame takes one frame as a numpy array \(H, W\) or \(H, W, 3\), "
                                         r"got a list"):
        rec.predict_frame([FACE, FACE])
    with pytest.raises(InputError, match="predict_frame takes one frame"):
        rec.predict_frame(np.zeros((2, 48, 48), np.uint8))
    with pytest.raises(InputError, match="float pixel values must lie in 0..255"):
        rec.predict_frame(np.full((60, 60), 1e6))


def test_accepted_edges_stay_accepted(rec):
    """What the checks must not refuse: float 0..255 and 0.0/255.0 exactly, a batch of 3 as (3, H, W, 1) or a
    list, 1-pixel crops, (1, H, W), a (3, H, W) slice given to prepare (dataset batches)."""
    from edgefer.preprocess import prepare

    assert len(rec.predict(np.array([[0.0, 255.0], [10.5, 3.0]]))) == 1
    assert len(rec.predict(np.zeros((3, 48, 48, 1), np.uint8))) == 3
    assert len(rec.predict([FACE] * 3)) == 3
    assert len(rec.predict(np.zeros((1, 1), np.uint8))) == 1
    assert len(rec.predict(np.zeros((1, 48, 48), np.uint8))) == 1
    assert prepare(np.zeros((3, 48, 48), np.uint8), rec.spec).shape[0] == 3
    probs = rec.predict(np.full((48, 48), 255.0, np.float64)).probs
    assert np.isfinite(probs).all() and abs(probs.sum() - 1) < 1e-5
