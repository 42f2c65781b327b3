"""ONNX Runtime backend (``.onnx``). Imports onnxruntime only.

``InferenceSession.run`` is thread-safe, so one backend serves several threads at once.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from ..errors import ModelError, require
from ..spec import METADATA_KEY
from .base import Backend, TensorInfo, reject_precision, resolve_spec

_DTYPES = {"tensor(float)": np.dtype(np.float32), "tensor(float16)": np.dtype(np.float16)}
# device -> execution providers in order of preference (CPU last, for the nodes a GPU provider cannot take)
_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, session, *args, **kwargs):
        self._session = session
        super().__init__(*args, **kwargs)
        self._feed_name = self.input_info.name
        self._output_names = [self.output_info.name]
        self._cast = self.input_info.dtype != np.float32

    @classmethod
    def open(cls, path: Path, *, device=None, threads=None, precision=None, sidecar=None,
             spec=None) -> OnnxRuntimeBackend:
        ort = require("onnxruntime", "onnx", "running ONNX models")
        reject_precision(path, cls.name, precision)
        device = (device or "cpu").lower()
        providers = _providers(ort, path, device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only; warnings about unused initialisers are noise here
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:  # a model that fails to load makes ONNX Runtime print "EP Error ... Falling back" on stdout and retry
            with contextlib.redirect_stdout(io.StringIO()):
                session = ort.InferenceSession(str(path), options, providers=providers)
        except _load_errors() as exc:
            reason = str(exc).strip().splitlines()[0].split(" failed:")[-1] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path}: not a loadable ONNX model ({reason})") from None
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            raise ModelError(f"{path}: expected one image input, found {[i.name for i in inputs]}")
        if not outputs:
            raise ModelError(f"{path}: the model has no output")
        try:
            input_info, output_info = _info(path, inputs[0]), _info(path, outputs[0])
        except UnicodeDecodeError as exc:
            raise ModelError(f"{path}: a tensor name or dimension is not UTF-8 text ({exc.reason}); not an intact "
                             "model") from None
        try:
            embedded = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        except UnicodeDecodeError as exc:
            raise ModelError(f"{path}: the model's metadata is not UTF-8 text ({exc.reason}); not an intact "
                             "edgefer model") from None
        spec = spec or resolve_spec(path, embedded, sidecar, input_info, output_info)
        batch = input_info.shape[0] if input_info.shape else None
        return cls(session, path, spec, input_info, output_info, device=device,
                   precision=spec.precision, min_batch=batch or 1, max_batch=batch)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        if self._cast:
            x = x.astype(self.input_info.dtype)
        return self._session.run(self._output_names, {self._feed_name: x})[0]

    def _release(self) -> None:
        self._session = None


def _load_errors() -> tuple[type[Exception], ...]:
    """The exception types onnxruntime raises for unreadable or invalid model files."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoModel", "NoSuchFile", "NotImplemented",
             "RuntimeException")
    # UnicodeDecodeError: a name or metadata in the file that is not UTF-8 (a damaged model)
    return (*(getattr(state, n) for n in names if hasattr(state, n)), UnicodeDecodeError)


def _providers(ort, path: Path, device: str) -> list[str]:
    if device not in _PROVIDERS:
        raise ModelError(f"{path}: device '{device}' is not supported by onnxruntime (choose {', '.join(_PROVIDERS)})")
    wanted = _PROVIDERS[device]
    if wanted[0] not in ort.get_available_providers():
        raise ModelError(f"{path}: device '{device}' needs {wanted[0]}, which this onnxruntime build lacks "
                         f"(available: {', '.join(ort.get_available_providers())}; GPU builds: onnxruntime-gpu)")
    return wanted


def _info(path: Path, node) -> TensorInfo:
    if node.type not in _DTYPES:
        raise ModelError(f"{path}: tensor '{node.name}' has type {node.type}; expected float or float16")
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in node.shape)
    return TensorInfo(node.name, shape, _DTYPES[node.type])
