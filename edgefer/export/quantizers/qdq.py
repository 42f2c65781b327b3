"""ONNX Runtime Q/DQ INT8 (the graph TensorRT builds INT8 engines from, and ONNX Runtime runs): the search's
adapter around ``edgefer.export.qdq.quantize_qdq``. Layers are ONNX node names. Its sensitivity probe compares
every quantized node's output in the INT8 graph with the same tensor of the FP32 graph as ORT pre-processes it.
"""

from __future__ import annotations

import contextlib
import glob
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ...errors import require
from ...fileio import atomic_path
from .. import qdq as _qdq
from ..qdq import CALIB_METHODS
from .base import rank, relative_errors
from .macs import CONV_OP_TYPES, LayerMap, onnx_layer_map

# where Q/DQ goes, when ``qdq.quantize_qdq`` offers a choice (``placement=``): its default first
PLACEMENTS = tuple(sorted(getattr(_qdq, "PLACEMENTS", ()), key=lambda p: p != getattr(_qdq, "DEFAULT_PLACEMENT", p)))
RECIPES = tuple({"method": method, **({"placement": PLACEMENTS[0]} if PLACEMENTS else {})} for method in CALIB_METHODS)
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


class QdqQuantizer:
    """ONNX Runtime Q/DQ INT8 (the TensorRT / ONNX Runtime graph); layers are ONNX node names."""

    name, runtime, suffix, recipes = "onnxruntime-qdq", "onnxruntime", ".onnx", RECIPES
    qat = True  # a QAT Q/DQ graph (edgefer.qat) is a TensorRT Q/DQ graph too
    conv_ops = CONV_OP_TYPES

    def __init__(self, fp32_onnx, calib, spec, options, *, quantize_bias: bool = False, validation=None,
                 trt_cache: bool = False):
        self.fp32_onnx, self.calib, self.spec, self.options = Path(fp32_onnx), calib, spec, options
        self.keep_fp, self.batch_size, self.quantize_bias = tuple(options.keep_fp), options.batch_size, quantize_bias
        self.trt_cache = trt_cache

    def default_recipe(self) -> dict:
        return {"method": self.options.method, **({"placement": self.options.placement} if PLACEMENTS else {})}

    def recipe_variants(self, best: dict) -> list[dict]:
        """The best calibration method with each other Q/DQ placement (none when ``quantize_qdq`` has one)."""
        return [{**best, "placement": p} for p in PLACEMENTS if p != best.get("placement")]

    def fallback_recipes(self, base: dict) -> list[dict]:
        return []

    def layer_map(self, path: Path) -> LayerMap:
        """Convolution layers of the Q/DQ graph (MACs, INT8 when a DequantizeLinear feeds input and weight)."""
        onnx = require("onnx", "onnx", "INT8 quantization")
        proto = onnx.load(str(path))

        def measure(names: list[str]) -> dict:  # shapes inference leaves unknown: one batch of a black image
            from ..calibration import Batches

            x = next(iter(Batches(np.zeros((1, 8, 8), np.uint8), self.spec, 1)))
            values = _onnx_probe(proto, names)(x)
            return {n: (1, *np.shape(v)[1:]) for n, v in values.items()}  # per image

        return onnx_layer_map(proto, measure)

    def quantize(self, recipe: dict, excluded: list[str], path: Path) -> dict:
        from ..qdq import quantize_qdq
        from ..trt_cache import cache_path_for

        keep = (*self.keep_fp, *(glob.escape(name) for name in excluded))
        cache = {"trt_cache": cache_path_for(path)} if self.trt_cache else {}
        with contextlib.redirect_stdout(io.StringIO()):  # ORT's entropy/percentile calibrators print() progress
            placement = {"placement": recipe["placement"]} if "placement" in recipe else {}
            info = quantize_qdq(self.fp32_onnx, self.calib, self.spec, path, method=recipe["method"], keep_fp=keep,
                                batch_size=self.batch_size, quantize_bias=self.quantize_bias, **placement, **cache)
        if excluded:
            _float_inputs(path, set(excluded))
        return info

    def copy(self, source: Path, target: Path) -> None:
        from ..trt_cache import cache_path_for

        shutil.copyfile(source, target)
        if cache_path_for(source).is_file():  # the TensorRT calibration cache of that graph goes with it
            shutil.copyfile(cache_path_for(source), cache_path_for(target))

    def sensitivity(self, int8_path: Path, x: np.ndarray) -> list[dict]:
        """Rank the quantized nodes of a Q/DQ graph against the FP32 graph as ORT pre-processes it
        (the graph ``quantize_qdq`` quantized, so tensor names match)."""
        onnx = require("onnx", "onnx", "INT8 sensitivity analysis")
        from onnxruntime.quantization.shape_inference import quant_pre_process

        int8 = onnx.load(str(int8_path))
        producers = {out: node for node in int8.graph.node for out in node.output}

        def before_quantizer(tensor: str) -> str | None:
            node = producers.get(tensor)
            if node is None or node.op_type != "DequantizeLinear":
                return tensor if node is not None else None
            quantize = producers.get(node.input[0])  # weights: DQ of an initializer, no QuantizeLinear
            return quantize.input[0] if quantize is not None and quantize.op_type == "QuantizeLinear" else None

        # a graph output gets Q/DQ too: the node then writes "<output>_QuantizeLinear_Input" instead of "<output>"
        renamed = {n.input[0]: n.output[0] for n in int8.graph.node if n.op_type == "DequantizeLinear"}
        fp32_name = {n.input[0]: renamed.get(n.output[0], n.input[0]) for n in int8.graph.node
                     if n.op_type == "QuantizeLinear"}
        layers = []
        for node in int8.graph.node:
            if node.op_type in QDQ_OPS or not any(
                    producers.get(t) is not None and producers[t].op_type == "DequantizeLinear" for t in node.input):
                continue
            inputs = [t for t in map(before_quantizer, node.input) if t]
            layers.append((node.name, node.op_type, inputs, node.output[0]))
        with tempfile.TemporaryDirectory(prefix="edgefer-sensitivity-") as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(self.fp32_onnx), str(prepared))
            fp32 = onnx.load(str(prepared))
        if not fp32.graph.value_info:
            fp32 = onnx.shape_inference.infer_shapes(fp32)
        typed = (*fp32.graph.value_info, *fp32.graph.input, *fp32.graph.output)
        known = {v.name for v in typed if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}  # not Shape's int64
        int8_to_fp32 = {t: t if t in known else fp32_name.get(t, t) for _, _, inputs, output in layers
                        for t in (*inputs, output)}
        layers = [(name, op, [int8_to_fp32[t] for t in inputs], int8_to_fp32[output])
                  for name, op, inputs, output in layers]
        layers = [layer for layer in layers if layer[3] in known and all(t in known for t in layer[2])]
        wanted = {i8: f for i8, f in int8_to_fp32.items() if f in known}
        int8_run = _onnx_probe(int8, list(wanted))
        errors = relative_errors(_onnx_probe(fp32, sorted(set(wanted.values()))),
                                  lambda batch: {wanted[k]: v for k, v in int8_run(batch).items()}, x,
                                 chunk=self.spec.batch)
        return rank(layers, errors)


def _float_inputs(path: Path, names: set[str]) -> None:
    """Feed the named nodes their activations unquantized (the input of their QuantizeLinear), drop the Q/DQ
    pairs nothing else reads, and save in place (metadata kept).

    ONNX Runtime's ``nodes_to_exclude`` keeps an excluded node's weights in FP32 but still quantizes the
    activation it reads whenever the producer is quantized; TensorRT runs a layer in floating point only
    when no Q/DQ pair precedes it, and so must the excluded layer here."""
    import onnx

    proto = onnx.load(str(path))
    nodes = list(proto.graph.node)
    producers = {out: node for node in nodes for out in node.output}
    for node in nodes:
        if node.name not in names:
            continue
        for i, tensor in enumerate(node.input):
            dequantize = producers.get(tensor)
            quantize = producers.get(dequantize.input[0]) if dequantize is not None \
                and dequantize.op_type == "DequantizeLinear" else None
            if quantize is not None and quantize.op_type == "QuantizeLinear":
                node.input[i] = quantize.input[0]
    while True:  # remove Q/DQ nodes whose outputs nobody reads any more
        read = {t for node in proto.graph.node for t in node.input} | {o.name for o in proto.graph.output}
        unused = [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                  and not any(o in read for o in n.output)]
        if not unused:
            break
        for node in unused:
            proto.graph.node.remove(node)
    used = {t for node in proto.graph.node for t in node.input}
    for initializer in [t for t in proto.graph.initializer if t.name not in used]:
        proto.graph.initializer.remove(initializer)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))


def _onnx_probe(proto, names: list[str]):
    """A function ``x -> {name: value}`` for the named tensors (graph inputs or node outputs) of an ONNX model
    (ORT CPU, the tensors exposed as extra graph outputs)."""
    import onnx

    from ...runtime.probe import open_probe

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    inputs = {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                              for n in names if n not in outputs and n not in inputs)
    probe = open_probe(model.SerializeToString(), "onnxruntime")
    fetch = {n for n in names if n not in inputs}

    def run(x: np.ndarray) -> dict:
        values = {n: v for n, v in probe(x).items() if n in fetch}
        values.update({n: x for n in names if n in inputs})
        return values

    return run
