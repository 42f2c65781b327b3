"""OpenVINO backend (``.xml`` IR with its ``.bin``). Imports openvino only.

Thread safety: the compiled model is shared; every thread that calls ``run`` gets its own InferRequest
(created on first use), so one backend serves several threads at once.
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

    def __init__(self, compiled_model, *args, **kwargs):
        self.compiled_model = compiled_model
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
        embedded = model.get_rt_info([METADATA_KEY]).astype(str) if model.has_rt_info([METADATA_KEY]) else None
        spec = resolve_spec(path, embedded, sidecar)
        if len(model.inputs) != 1:
            raise ModelError(f"{path}: expected one image input, found {len(model.inputs)}")
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
        try:
            used = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        except RuntimeError:  # a device without the property: report what was asked for
            used = hint or "default"
        return cls(compiled, path, spec, _info(model.input(0)), _info(model.output(0)), device=device,
                   precision=used, min_batch=batch or 1, max_batch=batch)

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled_model.create_infer_request()
        return request

    def _infer(self, x: np.ndarray) -> np.ndarray:
        # share_inputs: no copy of the batch; outputs are copied out of the request's memory
        return self._request().infer({0: x}, share_inputs=True)[0]

    def _release(self) -> None:
        self._local = threading.local()
        self.compiled_model = None


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
