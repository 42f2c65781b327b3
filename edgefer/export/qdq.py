"""Reduced-precision ONNX graphs that carry their types in the graph (what strongly typed TensorRT needs):
FP16 with FP32 inputs/outputs, and INT8 Q/DQ calibrated on a calibration bundle with ONNX Runtime's quantizer.

INT8 Q/DQ goes where NVIDIA places it for TensorRT by default (``placement="nvidia"``: inputs of weighted
layers and the skip input of residual additions; docs/tensorrt.md), on the inputs of weighted layers only
(``placement="weighted"``: additions in float) or on every op ONNX Runtime quantizes (``placement="all"``).
Activation ranges are collected batch by batch (``act_ranges``) and handed to ``quantize_static`` as its
calibration cache; the same ranges can be written as a TensorRT calibration cache.

``quantize_qdq`` is one call per setting (calibration method, excluded nodes), so an accuracy gate can call
it in a loop with ``check.evaluate`` until the macro-F1 drop is within bounds.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ..errors import ExportError, require
from ..spec import ModelSpec
from .act_ranges import ENTROPY_BINS, METHODS, collect_ranges, tensors_to_calibrate
from .calibration import CalibrationSet
from .config import DEFAULT_PLACEMENT, PLACEMENTS  # where Q/DQ goes (declared with the options)
from .keep_fp import match_nodes
from .onnx import save_onnx

CALIB_METHODS = METHODS
DEFAULT_CALIB_METHOD = "moving-average"  # best macro-F1 on this project's baseline (see docs/export.md)
WEIGHTED_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")
NVIDIA_OP_TYPES = (*WEIGHTED_OP_TYPES, "Add")


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
    return match_nodes([(n.name, n.op_type) for n in proto.graph.node], patterns, conv=("Conv",),
                       classifier=("Gemm", "MatMul"), noun="node", names="node names", head=4)


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
    placement: str = DEFAULT_PLACEMENT,
    trt_cache: str | Path | None = None,
) -> dict:
    """INT8 Q/DQ ONNX: symmetric INT8 activations, per-channel symmetric INT8 weights, calibrated on ``calib``.

    ``method``: moving-average (MinMax with a moving average over batches), minmax, entropy, percentile.
    ``keep_fp``: node patterns left in floating point. ``quantize_bias=False`` keeps biases in FP32, which
    TensorRT requires (it fuses them itself); ONNX Runtime's own CPU kernels prefer INT32 biases.
    ``placement``: ``nvidia`` (Q/DQ on the inputs of Conv/ConvTranspose/Gemm/MatMul and on the skip input of
    residual Adds; see docs/tensorrt.md), ``weighted`` (the inputs of those layers only: every convolution still
    runs in INT8, the additions in float) or ``all`` (every op ONNX Runtime can quantize, inputs and outputs).
    ``trt_cache``: also write a TensorRT calibration cache with the same ranges for every float tensor of the
    FP32 graph (implicit INT8 / DLA on TensorRT 10.x).
    Activation ranges are collected batch by batch (``act_ranges``), not by keeping every tensor in memory.
    """
    if method not in CALIB_METHODS:
        raise ExportError(f"--calib-method {method!r} is not supported; use one of {', '.join(CALIB_METHODS)}")
    if placement not in PLACEMENTS:
        raise ExportError(f"--placement {placement!r} is not supported; use one of {', '.join(PLACEMENTS)}")
    onnx = require("onnx", "onnx", "INT8 quantization")
    require("onnxruntime", "onnx", "INT8 quantization")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": quantize_bias}
    calibrate_method = {
        "moving-average": CalibrationMethod.MinMax, "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
    }[method]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgefer-qdq-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
        quant_pre_process(str(onnx_path), str(prepared))
        prepared_proto = onnx.load(str(prepared))
        excluded = resolve_nodes(prepared_proto, keep_fp)
        op_types = {"nvidia": NVIDIA_OP_TYPES, "weighted": WEIGHTED_OP_TYPES}.get(placement)
        nodes = _qdq_nodes(prepared_proto, excluded, residual=placement == "nvidia") if op_types else None
        ranges = _ranges(onnx_path, prepared, prepared_proto, op_types, calib, spec, batch_size, method,
                         everything=trt_cache is not None)
        del prepared_proto
        cache = ranges.save_ort_cache(Path(tmp) / "ranges.json")
        if op_types:
            extra["OpTypesToExcludeOutputQuantization"] = list(op_types)
        quantize_static(
            str(prepared), str(quantized), None,
            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8, calibrate_method=calibrate_method, nodes_to_exclude=excluded,
            op_types_to_quantize=list(op_types) if op_types else None, nodes_to_quantize=nodes,
            extra_options=extra, calibration_cache_path=cache,
        )
        proto = onnx.load(str(quantized))
    if placement == "nvidia":
        _unquantize_conv_branch_of_residual_adds(proto.graph)
    elif placement == "weighted":
        _float_inputs_of_unweighted_ops(proto.graph)
    info = {
        "quantizer": "onnxruntime", "calib_method": method, "placement": placement, "format": "QDQ",
        "activations": "int8 symmetric per-tensor", "weights": "int8 symmetric per-channel",
        "bias": "int32" if quantize_bias else "fp32",
        **({"entropy_bins": ENTROPY_BINS} if method == "entropy" else {}), "calib_batch_size": batch_size,
        "calib_images": len(calib), "calibration": "streaming", "keep_fp": list(keep_fp),
        "excluded_nodes": excluded, "qdq_consumers": qdq_consumers(proto),
    }
    if trt_cache is not None:
        from .trt_cache import DEFAULT_TENSORRT, write_cache

        write_cache(trt_cache, ranges.amax)
        info["trt_calib_cache"] = {"file": Path(trt_cache).name, "tensors": len(ranges.amax),
                                   "tensorrt": DEFAULT_TENSORRT}
    info["seconds"] = round(time.perf_counter() - start, 3)
    save_onnx(proto, out_path, spec.replace(precision="int8", extra={**spec.extra, "quantization": info}))
    return info


def _ranges(onnx_path, prepared: Path, prepared_proto, op_types, calib, spec, batch_size: int, method: str,
            everything: bool):
    """Activation ranges for the tensors the quantizer needs (all float tensors of the FP32 graph when
    ``everything``, for the TensorRT cache). Collected on the FP32 graph, whose tensor names TensorRT sees;
    tensors that exist only in the prepared graph are collected there in a second pass."""
    onnx = require("onnx", "onnx", "INT8 quantization")
    needed = tensors_to_calibrate(prepared_proto, op_types)
    if everything:
        source = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
        constants = _constant_tensors(source.graph)
        names = [n for n in tensors_to_calibrate(source) if n not in constants]
        del source
        ranges = collect_ranges(onnx_path, calib.batches(spec, batch_size), names, method=method)
        missing = [n for n in needed if n not in ranges.amax]
        if missing:
            more = collect_ranges(prepared, calib.batches(spec, batch_size), missing, method=method)
            ranges.amax.update(more.amax)
        return ranges
    return collect_ranges(prepared, calib.batches(spec, batch_size), needed, method=method)


def _constant_tensors(graph) -> set[str]:
    """Tensors computed from initializers and Constant nodes only (folded by TensorRT; no activation range)."""
    constant = {t.name for t in graph.initializer} | {""}
    for node in graph.node:
        if all(i in constant for i in node.input):
            constant.update(node.output)
    return constant


def _qdq_nodes(proto, excluded, residual: bool = True) -> list[str]:
    """Nodes that get Q/DQ inputs: weighted layers and, with ``residual`` (NVIDIA's placement), residual additions
    (an Add whose two inputs are both computed, not constants)."""
    constants = _constant_tensors(proto.graph)
    names = []
    for node in proto.graph.node:
        if node.name in excluded:
            continue
        if node.op_type in WEIGHTED_OP_TYPES or residual and (
                node.op_type == "Add" and len(node.input) == 2 and not constants.intersection(node.input)):
            names.append(node.name)
    return names


def _unquantize_conv_branch_of_residual_adds(graph) -> int:
    """Drop the Q/DQ between a Conv and the residual Add it feeds: TensorRT fuses that Add into the Conv
    (the Conv output stays in higher precision), and only the skip input is quantized. Returns the count."""
    producer = {o: n for n in graph.node for o in n.output}
    removed = 0
    for node in graph.node:
        if node.op_type != "Add":
            continue
        for i, name in enumerate(node.input):
            q = quantizer_of(producer, name)
            src = producer.get(q.input[0]) if q is not None else None
            if src is not None and src.op_type in WEIGHTED_OP_TYPES:
                node.input[i] = q.input[0]
                removed += 1
                break  # one branch fuses into the Conv; the other input stays quantized
    _drop_dead_qdq(graph)
    return removed


def _float_inputs_of_unweighted_ops(graph) -> int:
    """Reconnect every op other than a weighted layer to the float tensor behind a quantized activation: ONNX
    Runtime shares one Q/DQ pair among all readers of a tensor, so a residual Add reading the same block input
    as a Conv would otherwise read it quantized. Returns the count of inputs reconnected."""
    producer = {o: n for n in graph.node for o in n.output}
    moved = 0
    for node in graph.node:
        if node.op_type in WEIGHTED_OP_TYPES or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(node.input):
            q = quantizer_of(producer, name)
            if q is not None:
                node.input[i] = q.input[0]
                moved += 1
    _drop_dead_qdq(graph)
    return moved


def quantizer_of(producer: dict, name: str):
    """The QuantizeLinear behind tensor ``name`` when it is the output of a Q -> DQ pair, else None
    (``producer``: output name -> node, of the same graph)."""
    dq = producer.get(name)
    q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
    return q if q is not None and q.op_type == "QuantizeLinear" else None


def _drop_dead_qdq(graph) -> None:
    """Remove Q/DQ nodes whose outputs nothing reads any more."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    while True:
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}


def qdq_consumers(proto) -> dict[str, int]:
    """How many inputs of each op type a DequantizeLinear feeds (weights included), e.g. {"Conv": 340}."""
    dq_outputs = {o for n in proto.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        hits = sum(1 for i in node.input if i in dq_outputs)
        if hits:
            counts[node.op_type] = counts.get(node.op_type, 0) + hits
    return dict(sorted(counts.items()))
