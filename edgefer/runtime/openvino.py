"""OpenVINO backend (``.xml`` IR with its ``.bin``, or ``.onnx``). Imports openvino only.

Static shapes only: the model is never compiled with a dynamic batch. OpenVINO 2026.4.1 crashes in
``InferRequest.infer`` on Intel CPUs with AMX running an NNCF INT8 IR compiled with a dynamic batch at batch
1-4, while the same IR reshaped to a static batch runs at every size; a static batch-1 model is also faster
than a dynamic one. Batches are padded up to the next of ``BATCH_SIZES`` (batches above ``CHUNK`` run in
chunks of ``CHUNK``), each size reshaped and compiled on first use and kept in an LRU cache of
``MAX_COMPILED`` compiled models. Batch 1 runs on a model compiled with ``PERFORMANCE_HINT=LATENCY``; a larger
batch is split over the streams of models compiled with ``PERFORMANCE_HINT=THROUGHPUT`` (one static request
per stream, started together with ``start_async`` and waited for). Measurements behind these choices:
docs/runtime.md, "OpenVINO batches". A model whose graph hard-codes its batch (or whose spec states
``batch``) runs at that one size on the LATENCY hint (``Backend.run`` splits and pads to it).

Thread safety: compiled models are shared; each call takes idle InferRequests of the compiled model it needs
(or creates them) and gives them back, so one backend serves several threads at once.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import ModelError, require
from ..spec import METADATA_KEY
from .base import Backend, TensorInfo, resolve_spec

# precision option -> INFERENCE_PRECISION_HINT. None (``default_hint``): f32 for an fp32 model (OpenVINO would
# otherwise run it in bf16 on CPUs with AMX/AVX512-BF16); for an fp16 IR f16 where the device computes f16
# natively (OPTIMIZATION_CAPABILITIES lists FP16), else f32 on the FP16 weights, never bf16 (8 mantissa bits to
# FP16's 11; without AMX also slower than f32); the device's default for int8 IR (its float layers: bf16 on
# CPUs with AVX512-BF16 or AMX, f32 on AVX2).
PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16", "f16": "f16", "fp16": "f16"}
_FLOAT_TYPES = {"f32": "f32", "float32": "f32", "bf16": "bf16", "bfloat16": "bf16", "f16": "f16", "float16": "f16"}
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)  # static batch sizes compiled; a batch is padded up to one
CHUNK = BATCH_SIZES[-1]  # bigger batches run in chunks of this size
MAX_COMPILED = len(BATCH_SIZES) + 1  # every THROUGHPUT size + the LATENCY batch-1 model (LRU beyond that)


def padded_size(n: int) -> int:
    """The static batch size a batch of ``n`` (1..CHUNK) runs at."""
    return next(size for size in BATCH_SIZES if size >= n)


class _Static:
    """One model compiled for a static batch size and performance hint, with its idle infer requests."""

    def __init__(self, compiled, batch: int, hint: str):
        self.compiled, self.batch, self.hint = compiled, batch, hint
        try:
            self.streams = max(1, int(compiled.get_property("NUM_STREAMS")))
        except (RuntimeError, TypeError, ValueError):  # a device without the property
            self.streams = 1
        self._idle: list = []
        self._lock = threading.Lock()

    def acquire(self):
        with self._lock:
            return self._idle.pop() if self._idle else self.compiled.create_infer_request()

    def release(self, requests) -> None:
        with self._lock:
            self._idle.extend(requests)


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, core, model, config: dict, reshapable: bool, *args, **kwargs):
        self._core, self._model, self._config = core, model, config
        self._cache: OrderedDict[tuple[int, str], _Static] = OrderedDict()
        self._cache_lock = threading.Lock()
        # streams of a THROUGHPUT model on this device: a guess until the first one is compiled, then read from it
        self._streams = 1 if config.get("INFERENCE_NUM_THREADS") == 1 else 2
        super().__init__(*args, **kwargs)
        self.fixed = not reshapable or self.spec.batch is not None
        if not self.fixed:
            self.max_batch = CHUNK
        first = self._static(self.min_batch, "LATENCY")  # compiled now: errors and the precision known at open
        self.compiled_model = first.compiled
        # what executes (f32 / bf16 / f16: the float compute; an int8 IR's float layers), read from the compiled
        # model: a hint the device cannot honour is replaced (f16 asked on a CPU with AVX512-BF16 runs bf16)
        self.precision = executed_precision(first.compiled, config.get("INFERENCE_PRECISION_HINT", "default"))

    @classmethod
    def open(cls, path: Path, *, device=None, threads=None, precision=None, sidecar=None, spec=None) -> OpenVinoBackend:
        ov = require("openvino", "openvino", "running OpenVINO models")
        _check_ir(path)
        core = ov.Core()
        device = (device or "CPU").upper()
        if device.split(":")[0] not in ("AUTO", "MULTI", "HETERO") and device not in core.available_devices:
            raise ModelError(f"{path}: OpenVINO device '{device}' is not available "
                             f"(available: {', '.join(core.available_devices)})")
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:
            raise ModelError(f"{path}: not a loadable OpenVINO model ({_reason(exc)})") from None
        if len(model.inputs) != 1:
            raise ModelError(f"{path}: expected one image input, found {len(model.inputs)}")
        if not model.outputs:
            raise ModelError(f"{path}: the model has no output")
        input_info, output_info = _info(model.input(0)), _info(model.output(0))
        embedded = model.get_rt_info([METADATA_KEY]).astype(str) if model.has_rt_info([METADATA_KEY]) else None
        spec = spec or resolve_spec(path, embedded, sidecar, input_info, output_info)
        fixed = _fixed_batch(ov, model)
        config = {}
        hint = _precision_hint(path, precision, spec.precision, core, device)
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        return cls(core, model, config, fixed is None, path, spec, input_info, output_info, device=device,
                   precision=hint or "default", min_batch=fixed or 1, max_batch=fixed)

    def compiled_batches(self) -> list[tuple[int, str]]:
        """(static batch size, performance hint) of the models compiled now, least recently used first."""
        with self._cache_lock:
            return list(self._cache)

    def _static(self, batch: int, hint: str) -> _Static:
        """The model compiled for a static ``batch`` and ``hint`` (from the LRU cache, else compiled now).

        Compiling happens outside the cache lock, so calls on sizes already compiled never wait for another
        size's compile (two threads may compile the same new size once each; the first one is kept)."""
        key = (batch, hint)
        with self._cache_lock:
            entry = self._cache.get(key)
            if entry is not None:
                self._cache.move_to_end(key)
                return entry
            if self._model is None:
                raise ModelError(f"{self.path}: this model was closed")
            model, core = self._model.clone(), self._core
        try:
            model.reshape({model.input(0): self._ov_shape(batch)})
            compiled = core.compile_model(model, self.device, {"PERFORMANCE_HINT": hint, **self._config})
        except RuntimeError as exc:
            raise ModelError(f"{self.path}: OpenVINO cannot compile the model for {self.device} at batch "
                             f"{batch} ({_reason(exc)})") from None
        with self._cache_lock:
            entry = self._cache.setdefault(key, _Static(compiled, batch, hint))
            self._cache.move_to_end(key)
            if hint == "THROUGHPUT":
                self._streams = entry.streams
            while len(self._cache) > MAX_COMPILED:
                self._cache.popitem(last=False)
            return entry

    def _ov_shape(self, batch: int):
        import openvino as ov

        return ov.PartialShape(list(self.spec.input_shape(batch)))

    def _infer(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        if self.fixed or n == 1:
            entry = self._static(n if self.fixed else 1, "LATENCY")
            parts = [x]
        else:
            entry = self._static(padded_size(math.ceil(n / self._streams)), "THROUGHPUT")
            parts = [x[i : i + entry.batch] for i in range(0, n, entry.batch)]
        counts = [len(part) for part in parts]
        parts = [part if len(part) == entry.batch else _pad(part, entry.batch) for part in parts]
        requests = [entry.acquire() for _ in parts]
        started = []
        try:
            for request, part in zip(requests, parts):
                request.start_async({0: part}, share_inputs=True)  # no copy: ``parts`` outlives the waits below
                started.append(request)
            outputs = []
            for request, count in zip(requests, counts):
                request.wait()
                outputs.append(request.get_output_tensor(0).data[:count].copy())
        finally:
            for request in started:  # a request given back must be idle, also after an error
                try:
                    request.wait()
                except RuntimeError:
                    pass
            entry.release(requests)
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def _release(self) -> None:
        with self._cache_lock:
            self._cache.clear()
            self.compiled_model = self._model = self._core = None


def _pad(part: np.ndarray, batch: int) -> np.ndarray:
    padded = np.zeros((batch, *part.shape[1:]), part.dtype)
    padded[: len(part)] = part
    return padded


IR_VERSIONS = ("10", "11")  # the IR versions this OpenVINO reads


def _check_ir(path: Path) -> None:
    """Refuse files that are not OpenVINO IR before OpenVINO probes every frontend on them."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return  # OpenVINO reads ONNX directly (the spec then comes from the sidecar)
    if suffix != ".xml":
        raise ModelError(f"{path}: OpenVINO reads .xml IR or .onnx files, not '{suffix}'")
    with open(path, "rb") as f:
        head = f.read(4096)
    if b"<net" not in head:
        raise ModelError(f"{path}: not an OpenVINO IR file (no <net> element)")
    import xml.etree.ElementTree as ET

    root = None
    try:  # malformed XML: said here, before OpenVINO tries its other frontends (and they log parse errors)
        for _, element in ET.iterparse(path):
            root = element  # the last element to end is the root
    except ET.ParseError as exc:
        raise ModelError(f"{path}: not a loadable OpenVINO model (XML not well-formed: {exc})") from None
    # OpenVINO's IR reader takes <net version="10|11"> only; anything else goes to the TensorFlow, Paddle ...
    # frontends, which print parse errors straight to stderr
    if root is None or root.tag != "net":
        raise ModelError(f"{path}: not an OpenVINO IR file (root element <{getattr(root, 'tag', '')}>, "
                         "expected <net>)")
    if root.get("version") not in IR_VERSIONS:
        raise ModelError(f"{path}: not an OpenVINO IR this OpenVINO reads (<net version={root.get('version')!r}>, "
                         f"expected one of {', '.join(IR_VERSIONS)})")
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise ModelError(f"{path}: the weights file {weights.name} is missing next to it")


def _fixed_batch(ov, model) -> int | None:
    """The batch size a graph hard-codes (e.g. a Reshape to [1, -1]), or None when the batch can be reshaped."""
    port = model.input(0)
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4 or shape[0].is_dynamic:
        return None
    probe = model.clone()
    try:
        probe.reshape({probe.input(0): ov.PartialShape([-1, *list(shape)[1:]])})
    except RuntimeError:
        return shape[0].get_length()
    out = probe.output(0).get_partial_shape()
    if out.rank.is_static and out.rank.get_length() >= 1 and out[0].is_static:
        return shape[0].get_length()  # the output's batch did not follow the input's
    return None


def _precision_hint(path: Path, precision: str | None, model_precision: str, core=None,
                    device: str = "CPU") -> str | None:
    if precision is None:
        return default_hint(core, device, model_precision)
    if precision.lower() not in PRECISIONS:
        raise ModelError(f"{path}: precision must be one of f32, bf16, f16 (got {precision!r})")
    return PRECISIONS[precision.lower()]


def native_f16(core, device: str = "CPU") -> bool:
    """Whether ``device`` computes f16 natively (OpenVINO lists FP16 in its OPTIMIZATION_CAPABILITIES: ARM CPUs,
    x86 CPUs with AMX-FP16, GPUs). AVX2 and AVX512-BF16 CPUs do not: asked for f16 they run f32 or bf16."""
    if core is None:
        return False
    try:
        return "FP16" in {str(c).upper() for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")}
    except (RuntimeError, TypeError):  # a device without the property
        return False


def default_hint(core, device: str, model_precision: str) -> str | None:
    """The INFERENCE_PRECISION_HINT edgefer asks for when the caller names none (see ``PRECISIONS``)."""
    if model_precision == "fp32":
        return "f32"
    if model_precision == "fp16" and device.split(":")[0].upper() not in _VIRTUAL_DEVICES:
        return "f16" if native_f16(core, device) else "f32"
    return None


def executes(path: str | Path, model_precision: str = "fp32", device: str = "CPU") -> dict:
    """What the runtime's defaults execute an IR in on this machine without a spec (``edgefer info``): compiled
    once at batch 1 with ``default_hint`` for ``model_precision`` and read back (``executed_precision``)."""
    import openvino as ov

    if Path(path).suffix.lower() == ".xml":
        _check_ir(Path(path))
    core = ov.Core()
    hint = default_hint(core, device, model_precision)
    try:
        model = core.read_model(str(path))
        try:
            model.reshape({model.input(0): ov.PartialShape([1, *list(model.input(0).get_partial_shape())[1:]])})
        except RuntimeError:
            pass  # a graph that hard-codes its batch compiles as it is
        compiled = core.compile_model(model, device, {"INFERENCE_PRECISION_HINT": hint} if hint else {})
    except RuntimeError as exc:
        raise ModelError(f"{path}: OpenVINO cannot compile it for {device} ({_reason(exc)})") from None
    return {"runtime": "openvino", "device": device, "precision": executed_precision(compiled, hint or "default")}


def executed_precision(compiled, asked: str = "default") -> str:
    """The float precision a compiled model executes in: its INFERENCE_PRECISION_HINT property (what the plugin
    chose, not what was asked), else the precision most of the executed graph's compute layers output, else
    ``asked``."""
    try:
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
        name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
        if name in _FLOAT_TYPES:
            return _FLOAT_TYPES[name]
    except (RuntimeError, TypeError, AttributeError):  # a device (or wrapper) without the property
        pass
    try:
        counts: dict[str, int] = {}
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) in ("Convolution", "FullyConnected", "MatMul", "GroupConvolution"):
                out = _FLOAT_TYPES.get(info["outputPrecisions"].astype(str).lower())
                if out:
                    counts[out] = counts.get(out, 0) + 1
        if counts:
            return max(counts, key=counts.get)
    except (RuntimeError, TypeError, KeyError, AttributeError):
        pass
    return asked


def _info(port) -> TensorInfo:
    shape = port.get_partial_shape()
    dims = tuple(d.get_length() if d.is_static else None for d in shape) if shape.rank.is_static else ()
    return TensorInfo(port.get_any_name(), dims, np.dtype(port.get_element_type().to_dtype()))


def _reason(exc: Exception) -> str:
    """The useful line of an OpenVINO exception (they start with source locations)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(exc).__name__])[0]
