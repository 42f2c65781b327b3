"""ONNX Runtime CPU INT8 (U8S8 Q/DQ with INT32 biases, fused by ORT's CPU provider into its QLinear kernels): the
adapter around ``edgefer.export.ort_int8.quantize_for_ort_cpu``. Layers are ONNX node names; the graph is a
Q/DQ graph, so the sensitivity probe is the Q/DQ quantizer's (``qdq.QdqQuantizer.sensitivity``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ...errors import ExportError
from ..ort_int8 import CALIB_METHODS, OrtInt8Config
from .qdq import QdqQuantizer

RECIPES = tuple({"method": method} for method in CALIB_METHODS)


class OrtCpuQuantizer(QdqQuantizer):
    """INT8 ONNX for ONNX Runtime's own CPU kernels (x86 and ARM); biases are always INT32."""

    name, runtime, suffix, recipes = "onnxruntime-cpu", "onnxruntime", ".onnx", RECIPES
    qat = False

    def default_recipe(self) -> dict:
        if self.options.method not in CALIB_METHODS:
            raise ExportError(f"--calib-method {self.options.method!r} does not apply to --quantizer ort-cpu "
                              f"(use {' or '.join(CALIB_METHODS)})")
        return {"method": self.options.method}

    def quantize(self, recipe: dict, excluded: list[str], path: Path) -> dict:
        import onnx

        from ..ort_int8 import quantize_for_ort_cpu
        from ..qdq import resolve_nodes

        exclude = tuple(dict.fromkeys((*resolve_nodes(onnx.load(str(self.fp32_onnx)), self.keep_fp), *excluded)))
        config = dataclasses.replace(OrtInt8Config(), calib_method=recipe["method"], batch_size=self.batch_size,
                                     exclude=exclude)
        result = quantize_for_ort_cpu(self.fp32_onnx, path, self.calib, config, spec=self.spec)
        info = result.to_dict()
        info.pop("path")
        return {**info, "method": recipe["method"], "keep_fp": list(self.keep_fp), "excluded_nodes": list(exclude)}
