"""OpenVINO backend (``.xml`` IR with its ``.bin``). Imports openvino only.

Thread safety: the compiled model is shared; every thread that calls ``run`` gets its own InferRequest
(created on first use), so one backend serves several threads at once.

Batch 1 (a camera app's every call) runs on a second compiled model with a static 1xCxHxW input, compiled
on the first batch-1 call: on the 2-core dev CPU it is 14-23 % faster than the dynamic-batch model
(INT8 EfficientNetV2-S at 112 px, 3.3-3.7 vs 4.1-4.3 ms).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..errors import ModelError, require
from ..spec import METADATA_KEY
from .base import Backend, TensorInfo, resolve_spec

# precision option -> INFERENCE_PRECISION_HINT. None: f32 for an fp32 model (OpenVINO would otherwise run it
# in bf16 on CPUs with AMX/AVX512-BF16), the device's default otherwise (int8 and fp16 IRs).
PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16", "f16": "f16", "fp16": "f16"}


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, compiled_model, *args, compile_batch_one=None, **kwargs):
        self.compiled_model = compiled_model
        self._compile_batch_one = compile_batch_one  # None: the model is static already, or has no fixed H x W
        self._batch_one = None
        self._compile_lock = threading.Lock()
        self._local = threading.local()
        super().__init__(*args, **kwargs)

    @classmethod
    def open(cls, path: Path, *, device=None, threads=None, precision=None, sidecar=None) -> OpenVinoBackend:
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
        embedded = model.get_rt_info([METADATA_KEY]).astype(str) if model.has_rt_info([METADATA_KEY]) else None
        spec = resolve_spec(path, embedded, sidecar, _info(model.input(0)), _info(model.output(0)))
        batch = _dynamic_batch(ov, model)
        config = {"PERFORMANCE_HINT": "LATENCY"}
        hint = _precision_hint(path, precision, spec.precision)
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise ModelError(f"{path}: OpenVINO cannot compile the model for {device} ({_reason(exc)})") from None
        batch_one = _batch_one_model(ov, model) if batch is None else None
        try:
            used = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        except RuntimeError:  # a device without the property: report what was asked for
            used = hint or "default"
        compile_batch_one = None if batch_one is None else (lambda: core.compile_model(batch_one, device, config))
        return cls(compiled, path, spec, _info(model.input(0)), _info(model.output(0)), device=device,
                   precision=used, min_batch=batch or 1, max_batch=batch, compile_batch_one=compile_batch_one)

    def _request(self, batch: int):
        key = "batch_one" if batch == 1 and self._compile_batch_one else "dynamic"
        request = getattr(self._local, key, None)
        if request is None:
            compiled = self._batch_one_compiled() if key == "batch_one" else self.compiled_model
            request = compiled.create_infer_request()
            setattr(self._local, key, request)
        return request

    def _batch_one_compiled(self):
        with self._compile_lock:
            if self._batch_one is None:
                self._batch_one = self._compile_batch_one()
            return self._batch_one

    def _infer(self, x: np.ndarray) -> np.ndarray:
        # share_inputs: no copy of the batch; outputs are copied out of the request's memory
        return self._request(len(x)).infer({0: x}, share_inputs=True)[0]

    def _release(self) -> None:
        self._local = threading.local()
        self.compiled_model = self._batch_one = self._compile_batch_one = None


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
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise ModelError(f"{path}: the weights file {weights.name} is missing next to it")


def _dynamic_batch(ov, model) -> int | None:
    """Make the batch dimension dynamic where the model allows; return the static batch that remains, if any."""
    port = model.input(0)
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4 or shape[0].is_dynamic:
        return None
    try:
        model.reshape({port: ov.PartialShape([-1, *list(shape)[1:]])})
        return None
    except RuntimeError:  # a graph with a hard-coded batch (e.g. a Reshape to [1, -1]) keeps it
        return shape[0].get_length()


def _batch_one_model(ov, model):
    """A copy of a dynamic-batch model with a static 1 x C x H x W input, or None when C, H or W is dynamic."""
    shape = model.input(0).get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4 or any(d.is_dynamic for d in list(shape)[1:]):
        return None
    single = model.clone()
    single.reshape({single.input(0): ov.PartialShape([1, *list(shape)[1:]])})
    return single


def _precision_hint(path: Path, precision: str | None, model_precision: str) -> str | None:
    if precision is None:
        return "f32" if model_precision == "fp32" else None
    if precision.lower() not in PRECISIONS:
        raise ModelError(f"{path}: precision must be one of f32, bf16, f16 (got {precision!r})")
    return PRECISIONS[precision.lower()]


def _info(port) -> TensorInfo:
    shape = port.get_partial_shape()
    dims = tuple(d.get_length() if d.is_static else None for d in shape) if shape.rank.is_static else ()
    return TensorInfo(port.get_any_name(), dims, np.dtype(port.get_element_type().to_dtype()))


def _reason(exc: Exception) -> str:
    """The useful line of an OpenVINO exception (they start with source locations)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(exc).__name__])[0]
