"""The small interface every inference backend implements, and choosing one for a model file.

A backend opens one model file, reads its ``ModelSpec`` (embedded metadata or JSON sidecar), resolves the
input layout (NCHW or NHWC; stated in the spec or read from the input shape), checks that the network's input
and output fit the spec, and runs prepared float32 NCHW batches of any size, returning the model's float32
outputs (N, K): logits, probabilities or sigmoid scores as ``spec.output`` says. Transposing to NHWC,
splitting batches larger than the model accepts and padding batches a fixed-batch model needs happen here,
once, for all backends. Each backend module imports only its own runtime, and only when a model for it is
opened.
"""

from __future__ import annotations

import importlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError
from ..spec import METADATA_KEY, ModelSpec, read_sidecar, sidecar_path

# backend name -> "module:class"; modules are imported only when a model for them is opened
BACKENDS = {
    "onnxruntime": "edgefer.runtime.onnxrt:OnnxRuntimeBackend",
    "openvino": "edgefer.runtime.openvino:OpenVinoBackend",
    "tensorrt": "edgefer.runtime.tensorrt:TensorRtBackend",
}
ALIASES = {"onnx": "onnxruntime", "ort": "onnxruntime", "ov": "openvino", "trt": "tensorrt"}
SUFFIXES = {".onnx": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt", ".plan": "tensorrt"}


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape (None for a dynamic dimension) and numpy dtype of a model input or output."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype


def backend_name(path: str | Path, backend: str | None = None) -> str:
    """The canonical backend for ``path``: the explicit ``backend`` name or alias, else the file suffix."""
    _check_path(path)
    if backend is not None and not isinstance(backend, str):
        raise InputError(f"backend must be a name such as 'onnxruntime', 'openvino' or 'tensorrt' (or None: from "
                         f"the file suffix), got {type(backend).__name__} {backend!r}")
    if backend:
        name = ALIASES.get(backend.lower(), backend.lower())
        if name not in BACKENDS:
            choices = ", ".join(sorted([*BACKENDS, *ALIASES]))
            raise ModelError(f"unknown backend '{backend}' (choose from {choices})")
        return name
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        known = ", ".join(f"{s} ({b})" for s, b in SUFFIXES.items())
        raise ModelError(f"{path}: cannot tell the backend from the suffix '{suffix}'; use {known} or pass backend=")
    return SUFFIXES[suffix]


MAX_THREADS = 1024  # a runtime asked for 10**9 threads fails allocating them (std::bad_alloc)


def _check_path(path) -> None:
    if not isinstance(path, (str, os.PathLike)):
        hint = " (decode it: os.fsdecode(path))" if isinstance(path, bytes) else ""
        raise InputError(f"model path must be a str or os.PathLike, got {type(path).__name__}{hint}")


def open_backend(
    path: str | Path,
    backend: str | None = None,
    *,
    device: str | None = None,
    threads: int | None = None,
    precision: str | None = None,
    sidecar: str | Path | None = None,
    spec: ModelSpec | None = None,
) -> Backend:
    """Open ``path`` with the backend named or implied by its suffix (see ``Backend.open``).

    ``spec`` (a ModelSpec) replaces the model's metadata and any sidecar: for code that checks a model file it
    has just written (export checks, calibration) with the spec it holds in memory.
    """
    name = backend_name(path, backend)
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or not 1 <= threads <= MAX_THREADS):
        raise ModelError(f"threads must be a positive integer (at most {MAX_THREADS}), got {threads!r}")
    module, cls = BACKENDS[name].split(":")
    backend_cls = getattr(importlib.import_module(module), cls)
    if spec is not None and not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec, got {type(spec).__name__}")
    return backend_cls.open(path, device=device, threads=threads, precision=precision, sidecar=sidecar, spec=spec)


def resolve_spec(path: Path, embedded: str | None, sidecar: str | Path | None,
                 input_info: TensorInfo | None = None, output_info: TensorInfo | None = None) -> ModelSpec:
    """The spec from an explicit sidecar, else the model's embedded metadata, else ``<model>.json``.

    Without any, the error names the file to write and, when the tensors are known, what the model looks like.
    """
    if sidecar is None and embedded is not None:
        return ModelSpec.from_json(embedded, source=f"{path} metadata '{METADATA_KEY}'")
    if sidecar is None and input_info is not None and not sidecar_path(path).is_file():
        seen = f"input '{input_info.name}' {_fmt(input_info.shape)}"
        if output_info is not None and output_info.shape and output_info.shape[-1] is not None:
            seen += f", {output_info.shape[-1]} outputs"
        try:
            return read_sidecar(path)
        except ModelError as exc:
            raise ModelError(f"{exc} [this model: {seen}]") from None
    return read_sidecar(path, sidecar)


def reject_precision(path: Path, backend: str, precision: str | None) -> None:
    """Backends whose precision is fixed in the model file refuse a precision option instead of ignoring it."""
    if precision is not None:
        raise ModelError(
            f"{path}: precision={precision!r} is an OpenVINO option; {backend} runs the precision stored in the file"
        )


class Backend:
    """One opened model. Subclasses implement ``open`` and ``_infer`` (and ``_release`` if they hold resources).

    ``run`` is safe to call from several threads at once when the subclass's ``_infer`` is
    (each backend documents how it achieves that).
    """

    name = ""

    def __init__(
        self,
        path: Path,
        spec: ModelSpec,
        input_info: TensorInfo,
        output_info: TensorInfo,
        *,
        device: str,
        precision: str,
        min_batch: int = 1,
        max_batch: int | None = None,
    ):
        self.path, self.spec, self.device, self.precision = path, spec, device, precision
        self.input_info, self.output_info = input_info, output_info
        self.min_batch, self.max_batch = min_batch, max_batch
        self.closed = False
        self.async_workers = 2  # threads behind ``submit`` for backends without their own async API
        self._executor, self._executor_lock = None, threading.Lock()
        self.sample_shape = (spec.channels, spec.input_size, spec.input_size)  # what ``run`` takes: NCHW
        self._check_io()  # also resolves self.spec.layout and a fixed spec.batch

    @property
    def layout(self) -> str:
        """The model input's layout, "nchw" or "nhwc" (``run`` takes NCHW either way)."""
        return self.spec.layout

    @classmethod
    def open(cls, path: Path, *, device=None, threads=None, precision=None, sidecar=None, spec=None) -> Backend:
        """Load ``path`` for ``device`` with ``threads`` CPU threads; ``sidecar`` overrides embedded metadata,
        ``spec`` overrides both."""
        raise NotImplementedError

    def inputs(self) -> list[TensorInfo]:
        return [self.input_info]

    def outputs(self) -> list[TensorInfo]:
        return [self.output_info]

    def run(self, x: np.ndarray) -> np.ndarray:
        """The model's float32 outputs (N, K) for a prepared float32 NCHW batch (N, C, S, S), N of any size
        (transposed here for an NHWC model; split and padded to the batch sizes the model accepts)."""
        x = self._model_input(x)
        return self._joined([self._infer_padded(chunk) for chunk in self._chunks(x)], len(x))

    def submit(self, x: np.ndarray) -> Future:
        """Start ``run(x)`` and return at once: a ``concurrent.futures.Future`` of the outputs. A bad ``x`` raises
        here; errors of the inference itself surface through the future. ``x`` must not change until it is done."""
        x = self._model_input(x)
        n = len(x)
        return gather([self._start(chunk) for chunk in self._chunks(x)], lambda parts: self._joined(parts, n))

    def _model_input(self, x) -> np.ndarray:
        """Check a prepared NCHW batch and return it in the model's layout."""
        if self.closed:
            raise ModelError(f"{self.path}: this model was closed")
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[1:] != self.sample_shape or len(x) == 0:
            shape = getattr(x, "shape", type(x).__name__)
            raise InputError(f"{self.path.name}: expected a batch of shape (N, {', '.join(map(str, self.sample_shape))})"
                             f", got {shape}")
        if x.dtype != np.float32:
            raise InputError(f"{self.path.name}: expected float32 input (see edgefer.preprocess.prepare), got {x.dtype}")
        if self.spec.layout == "nhwc":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        return x

    def _chunks(self, x: np.ndarray) -> list[np.ndarray]:
        """``x`` as batches of at most ``max_batch`` (the last one may be below ``min_batch``: padded later)."""
        n = len(x)
        if self.min_batch <= n and (self.max_batch is None or n <= self.max_batch):
            return [x]
        step = self.max_batch or n
        return [x[i : i + step] for i in range(0, n, step)]

    def _joined(self, parts: list[np.ndarray], n: int) -> np.ndarray:
        outputs = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if outputs.shape != (n, self.spec.num_classes):
            raise ModelError(f"{self.path}: output shape {outputs.shape}, expected ({n}, {self.spec.num_classes}) "
                             f"for the {self.spec.num_classes} labels in the spec")
        return outputs.astype(np.float32, copy=False)

    def _start(self, chunk: np.ndarray) -> Future:
        """Run one chunk without waiting. Default: on this backend's worker threads (``async_workers``)."""
        with self._executor_lock:
            if self.closed:
                raise ModelError(f"{self.path}: this model was closed")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.async_workers, thread_name_prefix=f"edgefer-{self.name}")
            return self._executor.submit(self._infer_padded, chunk)

    def close(self) -> None:
        """Release the runtime's resources (once); the backend cannot run afterwards."""
        if not self.closed:
            self.closed = True
            with self._executor_lock:
                executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=True)
            self._release()

    def _release(self) -> None:
        """Free what ``open`` acquired."""

    def _infer(self, x: np.ndarray) -> np.ndarray:
        """Outputs for a batch in the model's layout that the model accepts as is (min_batch <= N <= max_batch)."""
        raise NotImplementedError

    def _infer_padded(self, chunk: np.ndarray) -> np.ndarray:
        n = len(chunk)
        if n >= self.min_batch:
            return self._infer(chunk)
        padded = np.zeros((self.min_batch, *chunk.shape[1:]), chunk.dtype)
        padded[:n] = chunk
        return self._infer(padded)[:n]

    def _check_io(self) -> None:
        """Refuse a model whose input/output does not fit its spec, before the runtime meets bad data."""
        shape, out = self.input_info.shape, self.output_info.shape
        where = f"{self.path}: input '{self.input_info.name}' of shape {_fmt(shape)}"
        if len(shape) != 4:
            raise ModelError(f"{where}: expected a 4-d image input, NCHW or NHWC")
        self.spec = spec = self.spec.with_layout_from(shape, source=where)
        channels, spatial = (shape[3], shape[1:3]) if spec.layout == "nhwc" else (shape[1], shape[2:])
        if channels is not None and channels != spec.channels:
            hint = ""
            if channels == 3 and spec.channels == 1:
                hint = ' (a gray network fed replicated RGB: "channels": 3, "color_order": "gray", 3 mean/std values)'
            raise ModelError(f"{where} has {channels} channel(s) but the spec says channels={spec.channels} "
                             f"(layout {spec.layout}){hint}")
        if any(d is not None and d != spec.input_size for d in spatial):
            raise ModelError(f"{where} does not match the spec's input_size={spec.input_size} (layout {spec.layout})")
        self._fit_batch(where)
        if self.input_info.dtype not in (np.float32, np.float16):
            raise ModelError(f"{where}: input dtype {self.input_info.dtype} is not supported (float32 or float16)")
        if len(out) != 2:
            raise ModelError(f"{self.path}: output '{self.output_info.name}' of shape {_fmt(out)}; expected (N, classes)")
        if out[1] is not None and out[1] != spec.num_classes:
            raise ModelError(f"{self.path}: the model has {out[1]} outputs but its spec lists {spec.num_classes} "
                             f"labels {list(spec.labels)}")

    def _fit_batch(self, where: str) -> None:
        """Apply the spec's fixed ``batch``: it must be one the model accepts; every call then runs at it."""
        batch = self.spec.batch
        if batch is None:
            return
        if batch < self.min_batch or (self.max_batch is not None and batch > self.max_batch):
            accepts = (f"batch {self.min_batch}" if self.min_batch == self.max_batch
                       else f"batches {self.min_batch}..{self.max_batch or 'any'}")
            raise ModelError(f"{where} accepts {accepts} but the spec says batch={batch}")
        self.min_batch = self.max_batch = batch

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path.name} device={self.device} precision={self.precision}>"


def gather(parts: list[Future], combine) -> Future:
    """One future for several: ``combine([results in order])`` when all are done, or the first exception."""
    if len(parts) == 1 and combine is None:
        return parts[0]
    done, lock, remaining = Future(), threading.Lock(), [len(parts)]

    def finished(part: Future) -> None:
        if part.exception() is not None:
            with lock:
                if not done.done():
                    done.set_exception(part.exception())
            return
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0 and not done.done()
        if last:
            try:
                done.set_result(combine([p.result() for p in parts]))
            except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
                done.set_exception(exc)

    for part in parts:
        part.add_done_callback(finished)
    return done


def _fmt(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
