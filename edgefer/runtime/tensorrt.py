"""TensorRT backend (``.engine`` / ``.plan``): TensorRT 10.x/11.x named-tensor API, CUDA via cuda-python.

An engine carries no edgefer metadata, so the spec comes from the JSON sidecar ``<engine>.json`` written
by ``edgefer build-engine``. Input and output live in pinned host buffers and device buffers sized for the
engine's largest batch (its optimisation profile 0); bigger batches are split by ``Backend.run``.

Thread safety: one execution context and one stream; calls to ``run`` are serialised with a lock.
"""

from __future__ import annotations

import ctypes
import importlib
import re
import threading
from pathlib import Path

import numpy as np

from ..errors import EdgeferError, ModelError, require
from .base import Backend, TensorInfo, reject_precision, resolve_spec


class CudaError(EdgeferError):
    """A CUDA runtime call failed (no GPU, out of memory, driver mismatch)."""


def import_cudart():
    """cuda-python's runtime module: ``cuda.bindings.runtime`` (cuda-python >= 12.6) or ``cuda.cudart``."""
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        return require("cuda.cudart", "tensorrt", "running TensorRT engines")


class _Cuda:
    """The few CUDA runtime calls the backend needs, with errors turned into CudaError."""

    def __init__(self, cudart):
        self.rt = cudart

    def call(self, name: str, *args):
        err, *values = getattr(self.rt, name)(*args)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise CudaError(f"CUDA {name} failed: {err}")
        return values[0] if len(values) == 1 else None

    def pinned(self, shape, dtype) -> tuple[int, np.ndarray]:
        """Page-locked host memory as a numpy array (and its pointer, to free it)."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = int(self.call("cudaMallocHost", nbytes))
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        return ptr, np.frombuffer(raw, dtype=dtype).reshape(shape)

    def copy_async(self, dst: int, src: int, nbytes: int, kind: str, stream) -> None:
        self.call("cudaMemcpyAsync", dst, src, nbytes, getattr(self.rt.cudaMemcpyKind, kind), stream)


class TensorRtBackend(Backend):
    name = "tensorrt"

    def __init__(self, runtime, engine, cuda: _Cuda, extra_outputs: list[TensorInfo], *args, **kwargs):
        self._runtime, self._engine, self._cuda = runtime, engine, cuda  # the engine must not outlive its runtime
        self._extra_outputs, self._lock = extra_outputs, threading.Lock()
        self._host, self._device_ptrs, self._stream = {}, [], None
        super().__init__(*args, **kwargs)
        self._allocate()

    @classmethod
    def open(cls, path: Path, *, device=None, threads=None, precision=None, sidecar=None, spec=None) -> TensorRtBackend:
        trt = require("tensorrt", "tensorrt", "running TensorRT engines")
        cuda = _Cuda(import_cudart())
        reject_precision(path, cls.name, precision)
        spec = spec or resolve_spec(path, None, sidecar)  # engines carry no metadata: always the sidecar
        device_index = _device_index(path, device)
        cuda.call("cudaSetDevice", device_index)
        logger = trt.Logger(trt.Logger.ERROR)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise ModelError(f"{path}: TensorRT {trt.__version__} cannot deserialize this engine (truncated, not an "
                             "engine, or built with another TensorRT version or GPU)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise ModelError(f"{path}: expected one image input and an output, found inputs {inputs}, outputs {outputs}")

        def info(name):
            shape = tuple(d if d >= 0 else None for d in engine.get_tensor_shape(name))
            return TensorInfo(name, shape, np.dtype(trt.nptype(engine.get_tensor_dtype(name))))

        input_info = info(inputs[0])
        if input_info.shape and input_info.shape[0] is None:
            low, _, high = engine.get_tensor_profile_shape(inputs[0], 0)
            min_batch, max_batch = int(low[0]), int(high[0])
        else:
            min_batch = max_batch = input_info.shape[0]
        return cls(runtime, engine, cuda, [info(n) for n in outputs[1:]], path, spec, input_info, info(outputs[0]),
                   device=f"cuda:{device_index}", precision=spec.precision, min_batch=min_batch, max_batch=max_batch)

    def _allocate(self) -> None:
        """Pinned host + device buffers for the largest batch; every IO tensor gets its device address."""
        cuda, n = self._cuda, self.max_batch
        self._context = self._engine.create_execution_context()
        self._stream = cuda.call("cudaStreamCreate")
        for info in (self.input_info, self.output_info, *self._extra_outputs):
            sample = info.shape[1:]
            if any(d is None for d in sample):
                raise ModelError(f"{self.path}: tensor '{info.name}' has dynamic non-batch dimensions {info.shape}")
            shape = (n, *sample)
            nbytes = int(np.prod(shape)) * info.dtype.itemsize
            device_ptr = int(cuda.call("cudaMalloc", nbytes))
            self._device_ptrs.append(device_ptr)
            self._context.set_tensor_address(info.name, device_ptr)
            if info in (self.input_info, self.output_info):
                self._host[info.name] = (device_ptr, *cuda.pinned(shape, info.dtype))

    def _infer(self, x: np.ndarray) -> np.ndarray:
        n, cuda = len(x), self._cuda
        inp, out = self.input_info, self.output_info
        in_device, _, in_host = self._host[inp.name]
        out_device, _, out_host = self._host[out.name]
        with self._lock:
            np.copyto(in_host[:n], x, casting="same_kind")  # float32 -> the engine's float32/float16
            self._context.set_input_shape(inp.name, (n, *inp.shape[1:]))
            cuda.copy_async(in_device, in_host.ctypes.data, in_host[:n].nbytes, "cudaMemcpyHostToDevice", self._stream)
            if not self._context.execute_async_v3(int(self._stream)):
                raise ModelError(f"{self.path}: TensorRT failed to run a batch of {n}")
            cuda.copy_async(out_host.ctypes.data, out_device, out_host[:n].nbytes, "cudaMemcpyDeviceToHost",
                            self._stream)
            cuda.call("cudaStreamSynchronize", self._stream)
            return out_host[:n].copy()

    def _release(self) -> None:
        with self._lock:
            cuda = self._cuda
            for _, host_ptr, _ in self._host.values():
                cuda.call("cudaFreeHost", host_ptr)
            for ptr in self._device_ptrs:
                cuda.call("cudaFree", ptr)
            if self._stream is not None:
                cuda.call("cudaStreamDestroy", self._stream)
            self._host, self._device_ptrs, self._stream = {}, [], None
            self._context = self._engine = self._runtime = None

    def _check_io(self) -> None:
        super()._check_io()
        if self.max_batch is None or self.max_batch < 1:
            raise ModelError(f"{self.path}: engine input '{self.input_info.name}' has no usable batch size")


def _device_index(path: Path, device: str | None) -> int:
    match = re.fullmatch(r"(?:cuda|gpu)(?::(\d+))?", (device or "cuda").lower())
    if not match:
        raise ModelError(f"{path}: TensorRT engines run on a CUDA GPU: device must be 'cuda' or 'cuda:N', "
                         f"got {device!r}")
    return int(match.group(1) or 0)
