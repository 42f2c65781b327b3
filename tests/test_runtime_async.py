"""predict_async / predict_frame_async / Backend.submit: results identical to the synchronous calls, each
future with its own call's results in input order, errors through the future, calls really overlapping."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edgefer.errors import InputError, ModelError
from edgefer.runtime import EmotionRecognizer
from tests.backends import needs_onnxruntime, needs_openvino, needs_torch
from tests.runtime_models import SIZE, shared_tiny

pytestmark = [needs_torch, needs_onnxruntime, needs_openvino]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny(tmp_path_factory)


@pytest.fixture(params=["onnx", "xml"])
def rec(request, tiny):
    with EmotionRecognizer.open(getattr(tiny, request.param), threads=1, async_workers=3,
                                detector=lambda frame: [(0, 0, 40, 40), (40, 20, 60, 60)]) as rec:
        yield rec


def test_async_equals_sync_in_order(rec):
    rng = np.random.default_rng(0)
    calls = [rng.integers(0, 256, (1 + i % 5, 40 + i, 44, 3), dtype=np.uint8) for i in range(12)]
    calls[3] = [calls[3][0], rng.integers(0, 256, (30, 70), dtype=np.uint8)]  # a list of different sizes
    futures = [rec.predict_async(faces, return_logits=True) for faces in calls]
    for faces, future in zip(calls, futures):
        got, want = future.result(timeout=60), rec.predict(faces, return_logits=True)
        assert got.labels == want.labels
        assert np.array_equal(got.probs, want.probs) and np.array_equal(got.logits, want.logits)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    framed = rec.predict_frame_async(frame).result(timeout=60)
    assert framed.to_dicts() == rec.predict_frame(frame).to_dicts() and len(framed) == 2


def test_async_copies_the_input(rec):
    faces = np.full((2, 48, 48), 200, np.uint8)
    want = rec.predict(faces).probs
    future = rec.predict_async(faces)
    faces[:] = 0  # the caller reuses its buffer at once
    assert np.array_equal(future.result(timeout=60).probs, want)


def test_errors_surface_through_the_future(rec, monkeypatch):
    bad = rec.predict_async(np.zeros((48, 48, 2), np.uint8))
    good = rec.predict_async(np.zeros((48, 48), np.uint8))
    with pytest.raises(InputError, match=r"image: 2 channels"):
        bad.result(timeout=60)
    assert len(good.result(timeout=60)) == 1
    real = rec.backend._infer

    def failing(x):
        if len(x) == 3:
            raise RuntimeError("inference failed")
        return real(x)

    monkeypatch.setattr(rec.backend, "_infer", failing)
    futures = [rec.predict_async(np.zeros((n, 48, 48, 1), np.uint8)) for n in (1, 3, 2)]
    assert len(futures[0].result(timeout=60)) == 1 and len(futures[2].result(timeout=60)) == 2
    with pytest.raises(RuntimeError, match="inference failed"):
        futures[1].result(timeout=60)


def test_calls_overlap(rec, monkeypatch):
    barrier = threading.Barrier(2, timeout=20)  # both calls must be inside the backend at the same time
    real = rec.backend._infer
    monkeypatch.setattr(rec.backend, "_infer", lambda x: (barrier.wait(), real(x))[1])
    futures = [rec.predict_async(np.zeros((48, 48), np.uint8)) for _ in range(2)]
    assert [len(f.result(timeout=60)) for f in futures] == [1, 1]


def test_backend_submit_and_close(rec):
    x = np.random.default_rng(1).standard_normal((5, 1, SIZE, SIZE)).astype(np.float32)
    assert np.array_equal(rec.backend.submit(x).result(timeout=60), rec.backend.run(x))
    with pytest.raises(InputError, match="expected a batch of shape"):
        rec.backend.submit(x[:, :, :8])
    pending = rec.predict_async(np.zeros((4, 48, 48, 1), np.uint8))
    rec.close()  # finishes the calls in flight
    assert len(pending.result(timeout=0)) == 4
    with pytest.raises(ModelError, match="this model was closed"):
        rec.predict_async(np.zeros((48, 48), np.uint8))
