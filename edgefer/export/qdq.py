"""Reduced-precision ONNX graphs that carry their types in the graph (what strongly typed TensorRT needs):
FP16 with FP32 inputs/outputs, and INT8 Q/DQ calibrated on a calibration bundle with ONNX Runtime's quantizer.

``quantize_qdq`` is one call per setting (calibration method, excluded nodes), so an accuracy gate can call
it in a loop with ``check.evaluate`` until the macro-F1 drop is within bounds.
"""

from __future__ import annotations

import fnmatch
import tempfile
import time
from pathlib import Path

from ..errors import ExportError, require
from ..progress import progress
from ..spec import ModelSpec
from .calibration import CalibrationSet
from .onnx import save_onnx

CALIB_METHODS = ("moving-average", "minmax", "entropy", "percentile")
DEFAULT_CALIB_METHOD = "moving-average"  # best macro-F1 on this project's baseline (see docs/export.md)
ENTROPY_BINS = 512  # entropy calibrator histogram bins (128 quantized bins): 2048 took 3.6x longer, scored no better
NODE_ALIASES = ("first-conv", "classifier")  # --keep-fp shortcuts: the stem convolution, the final Gemm/MatMul


def to_fp16(onnx_path: str | Path, out_path: str | Path, spec: ModelSpec) -> dict:
    """Convert an FP32 ONNX model to FP16 weights and compute, keeping FP32 inputs and outputs."""
    onnx = require("onnx", "onnx", "FP16 conversion")
    require("onnxruntime", "onnx", "FP16 conversion")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    start = time.perf_counter()
    proto = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    _sort_topologically(proto.graph)  # the converter appends its input casts after their consumers
    save_onnx(proto, out_path, spec.replace(precision="fp16"))
    return {"converter": "onnxruntime.transformers.float16", "keep_io_types": True,
            "seconds": round(time.perf_counter() - start, 3)}


def _sort_topologically(graph) -> None:
    """Reorder ``graph.node`` so every node follows the producers of its inputs (stable otherwise)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise ExportError(f"ONNX graph has a cycle or a missing input near node {pending[0].name!r}")
        for node in ready:
            available.update(node.output)
        ordered.extend(ready)
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def resolve_nodes(proto, patterns) -> list[str]:
    """Node names matching ``patterns``: fnmatch patterns on node names, or the aliases ``first-conv`` and
    ``classifier``. A pattern that matches nothing is an error listing a few real node names."""
    nodes = list(proto.graph.node)
    names: list[str] = []
    for pattern in patterns:
        if pattern == "first-conv":
            found = [n.name for n in nodes if n.op_type == "Conv"][:1]
        elif pattern == "classifier":
            found = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")][-1:]
        else:
            found = [n.name for n in nodes if fnmatch.fnmatchcase(n.name, pattern)]
        if not found:
            sample = ", ".join(n.name for n in nodes[:4] + nodes[-2:])
            raise ExportError(f"--keep-fp {pattern!r} matches no node; use {' or '.join(NODE_ALIASES)} or an fnmatch "
                              f"pattern on node names (e.g. {sample})")
        names.extend(n for n in found if n not in names)
    return names


def _entropy_ranges(model_path: Path, reader, workdir: Path) -> Path:
    """Entropy (KL) activation ranges with ``ENTROPY_BINS`` histogram bins, saved as an ORT calibration cache.

    ``quantize_static`` builds its entropy calibrator with 128 histogram bins and 128 quantized bins, which
    leaves the threshold search no choice (the result equals MinMax).
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    calibrator = create_calibrator(
        model_path, None, augmented_model_path=str(workdir / "augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"symmetric": True, "num_bins": ENTROPY_BINS, "num_quantized_bins": 128},
    )
    calibrator.collect_data(reader)
    cache = workdir / "ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


class _Reader:
    """ONNX Runtime CalibrationDataReader over a calibration bundle, with a progress bar."""

    def __init__(self, batches, input_name: str, desc: str):
        self.batches, self.input_name, self.desc = batches, input_name, desc
        self.rewind()

    def get_next(self):
        batch = next(self.iterator, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self):
        self.iterator = iter(progress(self.batches, total=len(self.batches), desc=self.desc))


def quantize_qdq(
    onnx_path: str | Path,
    calib: CalibrationSet,
    spec: ModelSpec,
    out_path: str | Path,
    *,
    method: str = DEFAULT_CALIB_METHOD,
    keep_fp=(),
    batch_size: int = 32,
    quantize_bias: bool = False,
) -> dict:
    """INT8 Q/DQ ONNX: symmetric INT8 activations, per-channel symmetric INT8 weights, calibrated on ``calib``.

    ``method``: moving-average (MinMax with a moving average over batches), minmax, entropy, percentile.
    ``keep_fp``: node patterns left in floating point. ``quantize_bias=False`` keeps biases in FP32, which
    TensorRT requires (it fuses them itself); ONNX Runtime's own CPU kernels prefer INT32 biases.
    """
    if method not in CALIB_METHODS:
        raise ExportError(f"--calib-method {method!r} is not supported; use one of {', '.join(CALIB_METHODS)}")
    onnx = require("onnx", "onnx", "INT8 quantization")
    require("onnxruntime", "onnx", "INT8 quantization")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader_type = type("CalibrationReader", (_Reader, CalibrationDataReader), {})
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": quantize_bias}
    calibrate_method = {
        "moving-average": CalibrationMethod.MinMax, "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
    }[method]
    if method == "moving-average":
        extra["CalibMovingAverage"] = True
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgefer-qdq-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
        quant_pre_process(str(onnx_path), str(prepared))
        excluded = resolve_nodes(onnx.load(str(prepared)), keep_fp)
        input_name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
        reader = reader_type(calib.batches(spec, batch_size), input_name, f"calibrate ({method})")
        ranges = None
        if method == "entropy":
            ranges = _entropy_ranges(prepared, reader, Path(tmp))
        quantize_static(
            str(prepared), str(quantized), None if ranges else reader,
            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8, calibrate_method=calibrate_method, nodes_to_exclude=excluded,
            extra_options=extra, calibration_cache_path=ranges,
        )
        proto = onnx.load(str(quantized))
    info = {
        "quantizer": "onnxruntime", "calib_method": method, "format": "QDQ", "activations": "int8 symmetric",
        "weights": "int8 symmetric per-channel", "bias": "int32" if quantize_bias else "fp32",
        **({"entropy_bins": ENTROPY_BINS} if method == "entropy" else {}), "calib_batch_size": batch_size, "calib_images": len(calib), "keep_fp": list(keep_fp),
        "excluded_nodes": excluded, "seconds": round(time.perf_counter() - start, 3),
    }
    save_onnx(proto, out_path, spec.replace(precision="int8", extra={**spec.extra, "quantization": info}))
    return info
