"""The OpenVINO backend compiles static batch shapes only (never a dynamic batch: OpenVINO 2026.4.1 crashes on
some CPUs running a dynamic-batch INT8 IR): batch 1..8 on FP32, FP16 and INT8 IR, the LRU bound, fixed batches."""

from __future__ import annotations

import numpy as np
import pytest

from edgefer.runtime import EmotionRecognizer
from edgefer.runtime import openvino as ov_backend
from tests.backends import needs_nncf, needs_onnxruntime, needs_openvino, needs_torch
from tests.runtime_models import BATCH_TOLERANCE, SIZE, logit_tolerance, shared_tiny

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


@pytest.mark.parametrize(("precision", "hint"), [("fp32", None), ("fp16", None), ("fp16", "bf16"),
                                                pytest.param("int8", None, marks=needs_nncf)])
def test_batch_sweep_runs_static_shapes_only(irs, precision, hint):
    """Tolerances follow the precision that executed (read back from the compiled model), so the sweep holds on
    AVX2 (f32), AVX-512 BF16 and AMX (bf16) CPUs alike; ("fp16", "bf16") runs bf16 where the CPU has it."""
    tiny, paths = irs
    images = np.random.default_rng(1).integers(0, 256, (8, 48, 48), dtype=np.uint8)
    rec = EmotionRecognizer.open(paths[precision], threads=2, precision=hint)
    backend = rec.backend
    assert backend.compiled_batches() == [(1, "LATENCY")]  # batch 1 compiled at open, on the LATENCY hint
    assert "LATENCY" in str(backend.compiled_model.get_property("PERFORMANCE_HINT"))
    executed = backend.precision
    assert executed == backend.compiled_model.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if hint is None and precision == "fp16":  # never bf16 unless asked: f16 where native, else f32
        assert executed == ("f16" if ov_backend.native_f16(backend._core) else "f32")
    singles = np.concatenate([rec.predict(img, color="gray", return_logits=True).logits for img in images])
    ref = tiny.torch_logits(images)
    scale = max(1.0, float(np.abs(ref).max()))
    tolerance = logit_tolerance(precision, executed)
    assert np.abs(singles - ref).max() < tolerance * scale, (precision, executed)
    for n in range(1, 9):  # other batch sizes may pick other kernels: within the executed precision's rounding
        logits = rec.predict(images[:n, ..., None], color="gray", return_logits=True).logits
        assert np.abs(logits - singles[:n]).max() < min(tolerance, BATCH_TOLERANCE[executed]) * scale, n
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


# What the CPU plugin reports on each kind of CPU (OpenVINO 2026.4): OPTIMIZATION_CAPABILITIES, and the precision
# a compiled model executes in for a hint (None: the device default). AVX2 computes f32 only; AVX-512 BF16 (Zen 4,
# Cooper Lake) defaults to bf16 and runs an f16 hint in bf16 (measured on an AVX-512 BF16 CPU without AMX); AMX
# without FP16 in the capabilities is assumed to behave the same; a CPU listing FP16 (AMX-FP16) runs f16.
CPU_KINDS = {
    "avx2": (["FP32", "INT8", "BIN", "EXPORT_IMPORT"], {None: "f32", "f32": "f32", "bf16": "f32", "f16": "f32"}),
    "avx512_bf16": (["BF16", "WINOGRAD", "FP32", "INT8", "BIN", "EXPORT_IMPORT"],
                    {None: "bf16", "f32": "f32", "bf16": "bf16", "f16": "bf16"}),
    "amx_bf16": (["BF16", "FP32", "INT8", "BIN", "EXPORT_IMPORT"],
                 {None: "bf16", "f32": "f32", "bf16": "bf16", "f16": "bf16"}),
    "amx_fp16": (["BF16", "FP16", "FP32", "INT8", "BIN", "EXPORT_IMPORT"],
                 {None: "bf16", "f32": "f32", "bf16": "bf16", "f16": "f16"}),
}
# what edgefer executes by default per CPU kind and stored precision: FP16 never in bf16 unless asked
EXPECTED = {
    "avx2": {"fp32": "f32", "fp16": "f32", "int8": "f32"},
    "avx512_bf16": {"fp32": "f32", "fp16": "f32", "int8": "bf16"},
    "amx_bf16": {"fp32": "f32", "fp16": "f32", "int8": "bf16"},
    "amx_fp16": {"fp32": "f32", "fp16": "f16", "int8": "bf16"},
}


class _FakeType:
    def __init__(self, name):
        self.name = name

    def get_type_name(self):
        return self.name


class _FakeCompiled:
    """A real compiled model whose INFERENCE_PRECISION_HINT is what the faked CPU would report."""

    def __init__(self, compiled, executed):
        self._compiled, self._executed = compiled, executed

    def get_property(self, name):
        return _FakeType(self._executed) if name == "INFERENCE_PRECISION_HINT" else self._compiled.get_property(name)

    def __getattr__(self, name):
        return getattr(self._compiled, name)


class _FakeCpuCore:
    """``openvino.Core`` on a CPU of another kind: its capabilities and the precision it executes per hint."""

    def __init__(self, real, kind):
        self._real, (self._caps, self._runs) = real, CPU_KINDS[kind]
        self.hints: list = []

    def get_property(self, device, name):
        return list(self._caps) if name == "OPTIMIZATION_CAPABILITIES" else self._real.get_property(device, name)

    def compile_model(self, model, device, config):
        hint = config.get("INFERENCE_PRECISION_HINT")
        self.hints.append(hint)
        return _FakeCompiled(self._real.compile_model(model, device, config), self._runs[hint])

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.mark.parametrize("kind", list(CPU_KINDS))
def test_executed_precision_labels_and_tolerances_per_cpu_kind(irs, kind, monkeypatch):
    """Each CPU kind's property faked: the hint edgefer asks for, the precision it reports as executed, the bench
    label and the test tolerance all follow what the CPU runs, never the file's nominal precision."""
    import openvino as ov

    from edgefer.bench.rows import ROWS, row_label
    from edgefer.runtime.openvino import OpenVinoBackend

    tiny, paths = irs
    real = ov.Core()
    cores = []
    monkeypatch.setattr(ov, "Core", lambda: cores.append(_FakeCpuCore(real, kind)) or cores[-1])
    rows = {r.precision: r for r in ROWS if r.backend == "openvino"}
    for precision in ("fp32", "fp16", "int8"):
        path = paths["fp16" if precision == "fp16" else "fp32"]  # int8: the hint logic reads the spec's precision
        backend = OpenVinoBackend.open(path, spec=tiny.spec.replace(precision=precision), threads=1)
        executed = backend.precision
        backend.close()
        assert executed == EXPECTED[kind][precision], (kind, precision, cores[-1].hints)
        label = row_label(rows[precision], executed)
        if precision == "fp16":
            assert label == {"f16": "OpenVINO FP16", "f32": "OpenVINO FP16 weights (f32 compute)"}[executed]
            assert "bf16" not in label
        elif precision == "int8":
            assert label == f"OpenVINO INT8 ({executed} float layers)"
        else:
            assert label == "OpenVINO FP32 (forced f32)"
        tolerance = logit_tolerance(precision, executed)
        assert tolerance == {("fp32", "f32"): 1e-4, ("fp16", "f32"): 5e-3, ("fp16", "f16"): 1e-2}.get(
            (precision, executed), 0.3 if precision == "int8" else None)
    # bf16 asked for explicitly: executes (and is labelled and tolerated) as bf16 only where the CPU has it
    backend = OpenVinoBackend.open(paths["fp16"], precision="bf16", threads=1)
    executed = backend.precision
    backend.close()
    assert executed == CPU_KINDS[kind][1]["bf16"]
    assert row_label(rows["fp16"], executed) == ("OpenVINO FP16 IR (bf16 compute)" if executed == "bf16"
                                                 else "OpenVINO FP16 weights (f32 compute)")
    assert logit_tolerance("fp16", executed) == (2e-2 if executed == "bf16" else 5e-3)


def test_executed_precision_falls_back_to_the_executed_graph(irs):
    """Without the property, the precision is read from the executed graph's compute layers."""
    import openvino as ov

    class NoProperty:
        def __init__(self, compiled):
            self.compiled = compiled

        def get_property(self, name):
            raise RuntimeError("unsupported property")

        def get_runtime_model(self):
            return self.compiled.get_runtime_model()

    _, paths = irs
    core = ov.Core()
    for hint in ("f32", "bf16"):
        compiled = core.compile_model(core.read_model(str(paths["fp16"])), "CPU", {"INFERENCE_PRECISION_HINT": hint})
        read = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        assert ov_backend.executed_precision(NoProperty(compiled), "asked") == read
    assert ov_backend.executed_precision(object(), "asked") == "asked"
