"""The OpenVINO backend compiles static batch shapes only (never a dynamic batch: OpenVINO 2026.4.1 crashes on
some CPUs running a dynamic-batch INT8 IR): batch 1..8 on FP32, FP16 and INT8 IR, the LRU bound, fixed batches."""

from __future__ import annotations

import numpy as np
import pytest

from edgefer.runtime import EmotionRecognizer
from edgefer.runtime import openvino as ov_backend
from tests.backends import needs_nncf, needs_onnxruntime, needs_openvino, needs_torch
from tests.runtime_models import SIZE, shared_tiny

pytestmark = [needs_torch, needs_onnxruntime, needs_openvino]


@pytest.fixture(scope="module")
def irs(tmp_path_factory):
    """FP32, FP16 and (with nncf) INT8 IR of the tiny model, spec embedded."""
    import openvino as ov

    from edgefer.spec import embed_in_openvino

    folder = tmp_path_factory.mktemp("ov_batches")
    tiny = shared_tiny(tmp_path_factory)
    paths = {"fp32": tiny.xml}
    fp16 = ov.convert_model(str(tiny.onnx))
    embed_in_openvino(fp16, tiny.spec.replace(precision="fp16"))
    ov.save_model(fp16, str(folder / "fp16.xml"), compress_to_fp16=True)
    paths["fp16"] = folder / "fp16.xml"
    try:
        import nncf
    except ImportError:
        return tiny, paths
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 1, SIZE, SIZE)).astype(np.float32) for _ in range(8)]
    int8 = nncf.quantize(ov.convert_model(str(tiny.onnx)), nncf.Dataset(calib), subset_size=8,
                         fast_bias_correction=True)
    embed_in_openvino(int8, tiny.spec.replace(precision="int8"))
    ov.save_model(int8, str(folder / "int8.xml"))
    paths["int8"] = folder / "int8.xml"
    return tiny, paths


@pytest.mark.parametrize("precision", ["fp32", "fp16", pytest.param("int8", marks=needs_nncf)])
def test_batch_sweep_runs_static_shapes_only(irs, precision):
    tiny, paths = irs
    images = np.random.default_rng(1).integers(0, 256, (8, 48, 48), dtype=np.uint8)
    rec = EmotionRecognizer.open(paths[precision], threads=2)
    backend = rec.backend
    assert backend.compiled_batches() == [(1, "LATENCY")]  # batch 1 compiled at open, on the LATENCY hint
    assert "LATENCY" in str(backend.compiled_model.get_property("PERFORMANCE_HINT"))
    singles = np.concatenate([rec.predict(img, color="gray", return_logits=True).logits for img in images])
    ref = tiny.torch_logits(images)
    scale = max(1.0, float(np.abs(ref).max()))
    assert np.abs(singles - ref).max() < {"fp32": 1e-4, "fp16": 5e-3, "int8": 0.3}[precision] * scale  # INT8: random calibration
    for n in range(1, 9):
        logits = rec.predict(images[:n, ..., None], color="gray", return_logits=True).logits
        assert np.abs(logits - singles[:n]).max() < 1e-4 * scale, n
    streams = backend._streams
    for batch, hint in backend.compiled_batches():
        entry = backend._static(batch, hint)
        shape = entry.compiled.input(0).get_partial_shape()
        assert shape.is_static and list(shape.to_shape()) == [batch, 1, SIZE, SIZE]  # never a dynamic batch
        assert batch in ov_backend.BATCH_SIZES and hint in str(entry.compiled.get_property("PERFORMANCE_HINT"))
    # batches 2..8 ran split over the THROUGHPUT model's streams, each part padded to a static size
    expected = {(1, "LATENCY")} | {(ov_backend.padded_size(-(-n // streams)), "THROUGHPUT") for n in range(2, 9)}
    assert set(backend.compiled_batches()) == expected
    assert len(backend.compiled_batches()) <= ov_backend.MAX_COMPILED
    calls = []
    real = backend._infer
    backend._infer = lambda x: calls.append(len(x)) or real(x)
    big = np.random.default_rng(2).integers(0, 256, (ov_backend.CHUNK + 3, 48, 48), dtype=np.uint8)
    assert len(rec.predict(big)) == ov_backend.CHUNK + 3
    assert calls == [ov_backend.CHUNK, 3]  # chunks of CHUNK
    rec.close()


def test_padded_sizes_and_lru_bound(irs, monkeypatch):
    assert [ov_backend.padded_size(n) for n in (1, 3, 5, 7, 9, 13, 17, 25, 32)] == [1, 3, 6, 8, 12, 16, 24, 32, 32]
    _, paths = irs
    monkeypatch.setattr(ov_backend, "MAX_COMPILED", 2)
    rec = EmotionRecognizer.open(paths["fp32"], threads=1)
    for n in (2, 5, 9):
        rec.predict(np.zeros((n, 48, 48), np.uint8))
    assert len(rec.backend.compiled_batches()) == 2  # the least recently used ones were dropped
    assert rec.backend.compiled_batches()[-1][1] == "THROUGHPUT"


def test_fp32_runs_f32_and_precision_is_read_back(irs):
    _, paths = irs
    rec = EmotionRecognizer.open(paths["fp32"], threads=1)
    rec.predict(np.zeros((3, 48, 48, 1), np.uint8))
    for batch, hint in rec.backend.compiled_batches():
        compiled = rec.backend._static(batch, hint).compiled
        assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
        assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert rec.backend.precision == "f32"
