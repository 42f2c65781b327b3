"""Skip markers for optional backends: a test that needs a missing package skips with the reason."""

import importlib.util

import pytest


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def needs(module: str, extra: str):
    return pytest.mark.skipif(_missing(module), reason=f"{module} not installed (pip install 'edgefer[{extra}]')")


needs_torch = needs("torch", "train")
needs_onnxruntime = needs("onnxruntime", "onnx")
needs_openvino = needs("openvino", "openvino")
needs_nncf = needs("nncf", "openvino")
needs_cv2 = needs("cv2", "camera")
needs_tensorrt = pytest.mark.skipif(
    _missing("tensorrt"),
    reason="tensorrt not installed: TensorRT cannot be installed on this machine; run on a Jetson/GPU host",
)
