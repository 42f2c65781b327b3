"""Export an edgefer checkpoint or a user's ONNX classifier to ONNX, OpenVINO or TensorRT-ready graphs.

    from edgefer.export import ExportConfig, export
    result = export("runs/fer", ExportConfig("openvino", "int8"), "export/ov", data="fer2013.csv")

Layout: ``config`` (ExportConfig + validate), ``pipeline`` (stage -> step -> check -> publish), ``steps``
(one function per target x precision), ``quantizers`` (ORT Q/DQ, NNCF), ``search`` (the accuracy-bounded INT8
search), ``check`` (scores through edgefer.runtime), ``result`` (ExportResult = export.json).
Re-exports only, resolved on first use (``edgefer --help`` imports the light ``config`` module alone).
"""

import importlib

_EXPORTS = {
    "CalibOptions": "config", "ExportConfig": "config", "OnnxOptions": "config", "QuantOptions": "config",
    "SearchOptions": "config", "CalibrationSet": "calibration", "draw": "calibration", "from_data": "calibration",
    "export": "pipeline", "ExportResult": "result", "open_source": "source", "STEPS": "steps", "register": "steps",
    "EngineOptions": "tensorrt",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edgefer.export' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
