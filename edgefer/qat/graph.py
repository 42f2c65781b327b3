"""The QAT model as graphs: the Q/DQ ONNX and the OpenVINO INT8 IR converted from it, the activation ranges its
QuantizeLinear nodes hold (JSON scales, a TensorRT calibration cache), how many nodes its Q/DQ pairs feed, and the
same graph without Q/DQ for TensorRT implicit INT8. onnx is imported inside the functions."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .config import IR_NAME, ONNX_NAME
from .training import quiet


def export_graphs(model, spec, stage: Path, openvino: bool, seconds: dict) -> list[str]:
    """Q/DQ ONNX (legacy exporter: ModelOpt's quantizers export as QuantizeLinear/DequantizeLinear) and the
    OpenVINO IR converted from it."""
    from ..export.onnx import save_onnx, torch_to_onnx

    start = time.perf_counter()
    with quiet():
        proto, _ = torch_to_onnx(model, spec, exporter="legacy")
    save_onnx(proto, stage / ONNX_NAME, spec.replace(precision="int8"))
    seconds["onnx"] = round(time.perf_counter() - start, 3)
    files = [ONNX_NAME]
    if openvino:
        from ..export.openvino import to_ir

        start = time.perf_counter()
        to_ir(stage / ONNX_NAME, stage / IR_NAME, spec.replace(precision="int8"))
        seconds["openvino"] = round(time.perf_counter() - start, 3)
        files += [IR_NAME, Path(IR_NAME).with_suffix(".bin").name]
    return files


def _constant_values(graph) -> dict:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def activation_amax(onnx_path: str | Path) -> dict[str, float]:
    """Tensor name -> amax (127 x the QuantizeLinear scale) of every per-tensor quantized activation."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    constants = _constant_values(graph)
    produced_by_constant = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    amax = {}
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in constants or node.input[0] in produced_by_constant:
            continue
        scale = np.asarray(constants[node.input[1]], dtype=np.float64)
        if scale.size == 1:
            amax[node.input[0]] = float(scale.reshape(-1)[0]) * 127.0
    return amax


def qdq_node_counts(onnx_path: str | Path) -> dict:
    """Op type -> how many nodes of that type read a DequantizeLinear output (where the graph is quantized)."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    dq_outputs = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    counts: dict[str, int] = {}
    for node in graph.node:
        if any(i in dq_outputs for i in node.input):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    counts["QuantizeLinear"] = sum(n.op_type == "QuantizeLinear" for n in graph.node)
    counts["DequantizeLinear"] = len(dq_outputs)
    return dict(sorted(counts.items()))


def strip_qdq(onnx_path: str | Path, out_path: str | Path, spec) -> Path:
    """The Q/DQ graph without its QuantizeLinear/DequantizeLinear pairs: every tensor keeps its name, so the
    activation scales (``activation_amax``) apply to it as a TensorRT implicit-INT8 calibration cache."""
    import onnx

    from ..export.onnx import save_onnx

    proto = onnx.load(str(onnx_path))
    graph = proto.graph
    producer = {o: n for n in graph.node for o in n.output}
    source = {}  # DequantizeLinear output -> the float tensor its QuantizeLinear read
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and producer.get(node.input[0]) is not None:
            quantize = producer[node.input[0]]
            if quantize.op_type == "QuantizeLinear":
                source[node.output[0]] = quantize.input[0]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in source:
                node.input[i] = source[name]
    used = {i for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear") for i in n.input}
    used |= {o.name for o in graph.output}
    keep = [n for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and not (n.op_type == "Constant" and n.output[0] not in used)]
    del graph.node[:]
    graph.node.extend(keep)
    return save_onnx(proto, out_path, spec.replace(precision="fp32"))


def write_cache(path: Path, amax: dict[str, float]) -> bool:
    """A TensorRT 10 calibration cache of the QAT ranges (``edgefer.export.trt_cache``); True when written."""
    from ..export import trt_cache

    trt_cache.write_cache(path, amax)
    return True
