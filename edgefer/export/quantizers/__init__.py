"""INT8 quantizers behind one interface (``base.Quantizer``): ONNX Runtime CPU (``ort_cpu``), TensorRT-style ORT Q/DQ (``qdq``) and NNCF (``nncf``)."""

from .base import REGISTRY, Quantizer, create

__all__ = ["REGISTRY", "Quantizer", "create"]
