"""TensorRT backend. A real engine test skips without tensorrt (no GPU here); the backend's own logic
(sidecar spec, profile-sized pinned/device buffers, batch splitting, copies, errors, freeing) runs against
a fake ``tensorrt`` and ``cuda.bindings.runtime`` that execute a linear classifier in host memory."""

from __future__ import annotations

import ctypes
import sys
import types

import numpy as np
import pytest

from edgefer.errors import MissingDependency, ModelError
from edgefer.preprocess import prepare
from edgefer.runtime import EmotionRecognizer
from edgefer.runtime.tensorrt import CudaError
from edgefer.spec import ModelSpec, sidecar_path
from tests.backends import needs_onnxruntime, needs_tensorrt, needs_torch

SPEC = ModelSpec(input_size=16, mean=(0.5,), std=(0.25,), precision="fp16")
WEIGHTS = np.random.default_rng(0).normal(size=(16 * 16, 7)).astype(np.float32)
MAX_BATCH = 8


class FakeCudart:
    """The cuda-python runtime calls the backend makes; 'device' memory is host memory."""

    class cudaError_t:  # noqa: N801 - mirrors cuda-python's names
        cudaSuccess = 0
        cudaErrorMemoryAllocation = 2

    class cudaMemcpyKind:  # noqa: N801
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2

    def __init__(self):
        self.buffers, self.pinned, self.fail_malloc = {}, set(), False

    def _alloc(self, nbytes):
        buf = ctypes.create_string_buffer(nbytes)
        self.buffers[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def cudaMalloc(self, nbytes):  # noqa: N802
        if self.fail_malloc:
            return (self.cudaError_t.cudaErrorMemoryAllocation, 0)
        return (0, self._alloc(nbytes))

    def cudaMallocHost(self, nbytes):  # noqa: N802
        ptr = self._alloc(nbytes)
        self.pinned.add(ptr)
        return (0, ptr)

    def cudaFree(self, ptr):  # noqa: N802
        assert ptr not in self.pinned
        del self.buffers[ptr]
        return (0,)

    def cudaFreeHost(self, ptr):  # noqa: N802
        self.pinned.remove(ptr)
        del self.buffers[ptr]
        return (0,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):  # noqa: N802
        assert stream == 7 and kind in (1, 2)
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def cudaSetDevice(self, index):  # noqa: N802
        return (0,)

    def cudaStreamCreate(self):  # noqa: N802
        return (0, 7)

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (0,)

    def cudaStreamDestroy(self, stream):  # noqa: N802
        return (0,)


class FakeContext:
    def __init__(self, engine):
        self.engine, self.addresses, self.shape = engine, {}, None

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def set_input_shape(self, name, shape):
        assert name == "input" and 1 <= shape[0] <= MAX_BATCH
        self.shape = shape
        return True

    def execute_async_v3(self, stream):
        n = self.shape[0]
        self.engine.batches.append(n)
        x = np.frombuffer((ctypes.c_byte * (n * 256 * 2)).from_address(self.addresses["input"]), np.float16)
        logits = x.reshape(n, -1).astype(np.float32) @ WEIGHTS
        ctypes.memmove(self.addresses["logits"], logits.astype(np.float32).tobytes(), logits.nbytes)
        return True


class FakeEngine:
    num_io_tensors = 2
    shapes = {"input": (-1, 1, 16, 16), "logits": (-1, 7)}
    dtypes = {"input": "float16", "logits": "float32"}

    def __init__(self):
        self.batches = []

    def get_tensor_name(self, i):
        return list(self.shapes)[i]

    def get_tensor_mode(self, name):
        return "in" if name == "input" else "out"

    def get_tensor_shape(self, name):
        return self.shapes[name]

    def get_tensor_dtype(self, name):
        return self.dtypes[name]

    def get_tensor_profile_shape(self, name, profile):
        return [(1, 1, 16, 16), (4, 1, 16, 16), (MAX_BATCH, 1, 16, 16)]

    def create_execution_context(self):
        return FakeContext(self)


def fake_tensorrt(engines: list):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.fake"
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.Logger = type("Logger", (), {"ERROR": 3, "__init__": lambda self, level: None})
    trt.nptype = np.dtype

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            if not data.startswith(b"FAKE-ENGINE"):
                return None
            engines.append(FakeEngine())
            return engines[-1]

    trt.Runtime = Runtime
    return trt


@pytest.fixture
def fake(monkeypatch, tmp_path):
    engines, cudart = [], FakeCudart()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(engines))
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    engine = tmp_path / "fer.engine"
    engine.write_bytes(b"FAKE-ENGINE" + bytes(32))
    sidecar_path(engine).write_text(SPEC.to_json())
    return types.SimpleNamespace(engine=engine, engines=engines, cudart=cudart)


def test_batches_split_by_profile_and_match_reference(fake):
    images = np.random.default_rng(1).integers(0, 256, (20, 30, 30), dtype=np.uint8)
    rec = EmotionRecognizer.open(fake.engine)
    assert rec.backend.device == "cuda:0" and rec.backend.max_batch == MAX_BATCH and rec.labels == list(SPEC.labels)
    pred = rec.predict(images, color="gray", return_logits=True)
    x = prepare(images, SPEC, color="gray").astype(np.float16).reshape(20, -1).astype(np.float32)
    assert fake.engines[0].batches == [8, 8, 4]
    assert np.allclose(pred.logits, x @ WEIGHTS, atol=1e-3)
    assert rec.predict(images[0], color="gray").labels == pred.labels[:1]
    # 4 pinned + device buffers (input, output); all freed on close
    assert len(fake.cudart.pinned) == 2 and len(fake.cudart.buffers) == 4
    rec.close()
    rec.close()
    assert fake.cudart.buffers == {} and fake.cudart.pinned == set()


def test_engine_errors(fake, tmp_path):
    with pytest.raises(ModelError, match="TensorRT engines run on a CUDA GPU"):
        EmotionRecognizer.open(fake.engine, device="cpu")
    assert EmotionRecognizer.open(fake.engine, device="cuda:1").backend.device == "cuda:1"
    with pytest.raises(ModelError, match="precision='f16' is an OpenVINO option"):
        EmotionRecognizer.open(fake.engine, precision="f16")
    bad = tmp_path / "bad.plan"
    bad.write_bytes(b"\0" * 64)
    sidecar_path(bad).write_text(SPEC.to_json())
    with pytest.raises(ModelError, match="bad.plan: TensorRT 10.fake cannot deserialize this engine"):
        EmotionRecognizer.open(bad)
    sidecar_path(fake.engine).unlink()
    with pytest.raises(ModelError, match=r"no preprocessing metadata in the model and no sidecar .*fer.engine.json; write that file"):
        EmotionRecognizer.open(fake.engine)
    sidecar_path(fake.engine).write_text(SPEC.replace(labels=("a", "b", "c")).to_json())
    with pytest.raises(ModelError, match="the model has 7 outputs but its spec lists 3 labels"):
        EmotionRecognizer.open(fake.engine)
    sidecar_path(fake.engine).write_text(SPEC.to_json())
    fake.cudart.fail_malloc = True
    with pytest.raises(CudaError, match="CUDA cudaMalloc failed"):
        EmotionRecognizer.open(fake.engine)


def test_missing_tensorrt_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    engine = tmp_path / "fer.engine"
    engine.write_bytes(b"x")
    with pytest.raises(MissingDependency, match=r"tensorrt is not installed .*pip install 'edgefer\[tensorrt\]'"):
        EmotionRecognizer.open(engine)


@needs_tensorrt
@needs_torch
@needs_onnxruntime
def test_real_engine_matches_onnxruntime(tmp_path):
    import tensorrt as trt

    from tests.runtime_models import SIZE, export_tiny

    tiny = export_tiny(tmp_path)
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(tiny.onnx.read_bytes())
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 1, SIZE, SIZE), (4, 1, SIZE, SIZE), (8, 1, SIZE, SIZE))
    config.add_optimization_profile(profile)
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(bytes(builder.build_serialized_network(network, config)))
    sidecar_path(engine).write_text(tiny.spec.to_json())
    images = np.random.default_rng(0).integers(0, 256, (11, 48, 48), dtype=np.uint8)
    ref = EmotionRecognizer.open(tiny.onnx).predict(images, color="gray", return_logits=True)
    with EmotionRecognizer.open(engine) as rec:
        got = rec.predict(images, color="gray", return_logits=True)
    assert np.abs(got.logits - ref.logits).max() < 1e-2
    assert got.labels == ref.labels
