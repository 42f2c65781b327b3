"""Property test: whatever goes into EmotionRecognizer.predict (random arrays, dtypes, shapes, values, lists,
non-arrays, colour names), on an ONNX Runtime and an OpenVINO model, only EdgeferError subclasses escape and
every returned probability row is finite and sums to 1. Bounded to a few seconds per backend."""

from __future__ import annotations

import numpy as np
import pytest

from edgefer.errors import EdgeferError
from edgefer.runtime import EmotionRecognizer
from tests.backends import needs, needs_onnxruntime, needs_openvino, needs_torch
from tests.runtime_models import shared_tiny

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis not installed (pip install 'edgefer[dev]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

pytestmark = [needs_torch, needs_onnxruntime, needs_openvino, needs("hypothesis", "dev")]

DTYPES = [np.uint8, np.float32, np.float64, np.float16, np.int16, np.int64, np.bool_, np.uint16, np.complex64]
SPECIAL = [0.0, 255.0, 255.5, -1e-3, np.nan, np.inf, -np.inf, 1e30, 128.0]


@st.composite
def arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    ndim = draw(st.integers(0, 5))
    dims = [draw(st.sampled_from([0, 1, 2, 3, 4, 5, 17, 40])) for _ in range(ndim)]
    if np.prod(dims, dtype=np.int64) > 40_000:
        dims = [min(d, 5) for d in dims]
    arr = draw(hnp.arrays(dtype, dims, elements=_elements(dtype)))
    if dtype.kind == "f" and arr.size and draw(st.booleans()):
        with np.errstate(over="ignore"):  # 1e30 into float16 becomes inf: one more special value
            arr.flat[draw(st.integers(0, arr.size - 1))] = draw(st.sampled_from(SPECIAL))
    return arr


def _elements(dtype):
    if dtype.kind == "f":
        return st.floats(0, 255, width=16 if dtype.itemsize == 2 else 32)
    if dtype.kind == "c":
        return st.complex_numbers(max_magnitude=255, allow_nan=False, allow_infinity=False)
    return None


faces = st.one_of(
    arrays(),
    st.lists(arrays(), min_size=0, max_size=4),
    st.lists(st.lists(st.integers(-5, 300), max_size=5), max_size=4),  # nested (maybe ragged) lists
    st.sampled_from([None, "face.png", {"a": 1}, 3, 2.5, b"\x00", object()]),
)
colors = st.sampled_from(["bgr", "rgb", "gray", "BGR", "xyz"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny(tmp_path_factory)


@pytest.mark.parametrize("kind", ["onnx", "xml"])
def test_predict_never_escapes(tiny, kind):
    rec = EmotionRecognizer.open(getattr(tiny, kind), threads=1)

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(faces=faces, color=colors)
    def check(faces, color):
        try:
            pred = rec.predict(faces, color=color)
        except EdgeferError:
            return
        assert np.isfinite(pred.probs).all()
        assert np.allclose(pred.probs.sum(axis=1), 1, atol=1e-5)
        assert len(pred.labels) == len(pred.probs) >= 1

    check()
    rec.close()
