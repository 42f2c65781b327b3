"""NNCF post-training INT8 on the OpenVINO model: the search's adapter around
``edgefer.export.openvino.quantize_openvino``, plus one ``nncf.quantize_with_accuracy_control`` fallback.
Layers are OpenVINO op friendly names; the sensitivity probe compares the ops fed by a FakeQuantize with the
same op outputs of the FP32 model.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from ...errors import require
from ...metrics import classification_report
from ...preprocess import prepare
from .base import rank, relative_errors
from .macs import ConvLayer, LayerMap

RECIPES = (
    {"preset": "mixed", "fast_bias_correction": True},
    {"preset": "performance", "fast_bias_correction": True},
    {"preset": "mixed", "fast_bias_correction": False},
)
WEIGHTED_OPENVINO_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")


class NncfQuantizer:
    """NNCF post-training INT8 on the OpenVINO model; layers are OpenVINO op friendly names."""

    name, runtime, suffix, recipes = "nncf", "openvino (INFERENCE_PRECISION_HINT=f32)", ".xml", RECIPES
    qat = False
    conv_ops = WEIGHTED_OPENVINO_OPS

    def __init__(self, fp32_onnx, calib, spec, options, *, quantize_bias: bool = False, validation=None,
                 trt_cache: bool = False):  # no TensorRT cache from an OpenVINO IR
        self.fp32_onnx, self.calib, self.spec, self.options = Path(fp32_onnx), calib, spec, options
        self.keep_fp, self.subset_size, self.validation = tuple(options.keep_fp), options.subset_size, validation

    def default_recipe(self) -> dict:
        return {"preset": self.options.preset, "fast_bias_correction": self.options.fast_bias_correction}

    def recipe_variants(self, best: dict) -> list[dict]:
        """The presets and bias corrections are all in ``recipes``."""
        return []

    def fallback_recipes(self, base: dict) -> list[dict]:
        """``nncf.quantize_with_accuracy_control`` with the best Stage-A preset: it reverts whatever quantizers it
        ranks worst, convolutions included, so the search runs it after the non-convolution fallback."""
        return [{**base, "accuracy_control": True}] if self.validation is not None else []

    def layer_map(self, path: Path) -> LayerMap:
        """Weighted ops of the NNCF IR with MACs per image; INT8 when NNCF quantized the weight (an op in the
        ignored scope keeps FP32 weights)."""
        from ..openvino import read_model

        return openvino_layer_map(read_model(path))

    def quantize(self, recipe: dict, excluded: list[str], path: Path) -> dict:
        from ..openvino import quantize_openvino

        nncf = require("nncf", "openvino", "OpenVINO INT8 quantization")
        if recipe.get("accuracy_control"):
            return self._accuracy_control(nncf, recipe, path)
        scope = nncf.IgnoredScope(names=list(excluded)) if excluded else None
        return quantize_openvino(self.fp32_onnx, self.calib, self.spec, path, preset=recipe["preset"],
                                 keep_fp=self.keep_fp, ignored_scope=scope,
                                 subset_size=self.subset_size, fast_bias_correction=recipe["fast_bias_correction"])

    def _accuracy_control(self, nncf, recipe: dict, path: Path) -> dict:
        """NNCF reverts the ops it ranks worst (by the distance of the logits to FP32) until its own macro-F1
        drop on the validation images is within the bound; it validates with OpenVINO's default CPU precision."""
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        from ..openvino import quiet_nncf, read_model, resolve_ops, save_ir

        images, labels, max_drop, iterations = self.validation
        model = read_model(self.fp32_onnx)
        nhwc = self.spec.layout == "nhwc"
        items = [(_layout(prepare(images[i : i + 1], self.spec, color="gray"), nhwc), int(labels[i]))
                 for i in range(len(images))]

        def validation_fn(compiled, data):
            data = list(data)
            outputs = [np.asarray(compiled(x)[0]) for x, _ in data]
            report = classification_report([y for _, y in data], [int(o.argmax()) for o in outputs], self.spec.labels)
            return report["macro_f1"], [[o] for o in outputs]  # per-item logits: NNCF ranks by their distance

        start = time.perf_counter()
        with quiet_nncf():
            quantized = nncf.quantize_with_accuracy_control(
                model, nncf.Dataset(self.calib.batches(self.spec, 1)), nncf.Dataset(items, lambda item: item[0]),
                validation_fn, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
                preset=nncf.QuantizationPreset.MIXED if recipe["preset"] == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
                subset_size=min(int(self.subset_size or len(self.calib)), len(self.calib)),
                fast_bias_correction=recipe["fast_bias_correction"],
                ignored_scope=nncf.IgnoredScope(names=resolve_ops(model, self.keep_fp)),
                advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(max_num_iterations=iterations))
        info = {"quantizer": "nncf.quantize_with_accuracy_control", "nncf_version": nncf.__version__,
                "preset": recipe["preset"], "fast_bias_correction": recipe["fast_bias_correction"],
                "max_drop": max_drop, "fp32_layers": _unquantized_ops(quantized), "calib_images": len(self.calib),
                "seconds": round(time.perf_counter() - start, 3)}
        save_ir(quantized, path, self.spec.replace(precision="int8", extra={**self.spec.extra, "quantization": info}),
                compress_to_fp16=False)
        return info

    def copy(self, source: Path, target: Path) -> None:
        shutil.copyfile(source.with_suffix(".bin"), target.with_suffix(".bin"))
        shutil.copyfile(source, target)

    def sensitivity(self, int8_path: Path, x: np.ndarray) -> list[dict]:
        """Rank the ops fed by a FakeQuantize in the NNCF IR against the FP32 model (same op names)."""
        from ..openvino import read_model

        int8 = read_model(int8_path)
        layers = []
        for op in int8.get_ordered_ops():
            if op.get_type_name() == "FakeQuantize":
                continue
            sources = [port.get_source_output() for port in op.inputs()]
            if not any(map(_is_fake_quantize, sources)):
                continue
            inputs = [_port_name(s.get_node().input(0).get_source_output()) for s in sources
                      if _is_fake_quantize(s)
                      and s.get_node().input(0).get_source_output().get_node().get_type_name() != "Constant"]
            layers.append((op.get_friendly_name(), op.get_type_name(), inputs, _port_name(op.output(0))))
        tensors = sorted({t for _, _, inputs, output in layers for t in (*inputs, output)})
        available, fp32_run = _openvino_probe(read_model(self.fp32_onnx), tensors)
        layers = [layer for layer in layers if layer[3] in available and all(t in available for t in layer[2])]
        return rank(layers, relative_errors(fp32_run, _openvino_probe(int8, available)[1], x, chunk=self.spec.batch))


def openvino_layer_map(model) -> LayerMap:
    """``macs.LayerMap`` of an OpenVINO model: Convolution / GroupConvolution / ConvolutionBackpropData / MatMul
    with a constant weight, MACs per image from the static shapes (batch dimension left out)."""
    constant: dict = {}

    def is_constant(node) -> bool:
        key = node.get_friendly_name()
        if key not in constant:
            kind = node.get_type_name()
            constant[key] = kind == "Constant" or (kind != "Parameter" and node.get_input_size() > 0 and all(
                is_constant(port.get_source_output().get_node()) for port in node.inputs()))
        return constant[key]

    ops = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
    convs = []
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in WEIGHTED_OPENVINO_OPS or not is_constant(op.input(1).get_source_output().get_node()):
            continue
        shapes = [op.get_input_partial_shape(0), op.input(1).get_partial_shape(), op.get_output_partial_shape(0)]
        if any(s.rank.is_dynamic or any(d.is_dynamic for d in list(s)[1:]) for s in shapes):
            continue
        x, w, out = ([d.get_length() for d in list(s)[1:]] for s in shapes)
        w = [shapes[1][0].get_length(), *w]  # the weight's own first dimension is not a batch
        if kind == "Convolution":
            macs = int(np.prod(out)) * int(np.prod(w[1:]))
        elif kind == "GroupConvolution":  # (groups, out/groups, in/groups, kh, kw)
            macs = int(np.prod(out)) * int(np.prod(w[2:]))
        elif kind == "ConvolutionBackpropData":  # (in, out, kh, kw)
            macs = int(np.prod(x)) * int(np.prod(w[1:]))
        else:  # MatMul x @ W
            k = w[-1] if op.get_attributes().get("transpose_b") else w[-2] if len(w) >= 2 else w[0]
            macs = int(np.prod(out)) * int(k)
        convs.append(ConvLayer(op.get_friendly_name(), kind, macs, _quantized_weight(op.input(1).get_source_output())))
    return LayerMap(ops, tuple(convs))


def _quantized_weight(output) -> bool:
    """The weight path holds a FakeQuantize or an integer constant (NNCF's compressed weights: i8 Constant ->
    Convert -> Multiply). NNCF quantizes a layer's weights exactly when it quantizes the layer (its activation
    FakeQuantize may sit above shape-only ops such as Reshape); an op in the ignored scope keeps FP32 weights."""
    node = output.get_node()
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        return True
    if kind == "Constant":
        return node.get_output_element_type(0).get_type_name() in ("i8", "u8", "i4", "u4")
    return any(_quantized_weight(port.get_source_output()) for port in node.inputs())


def _layout(x: np.ndarray, nhwc: bool) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x


def _unquantized_ops(model) -> list[str]:
    """Weighted ops whose weights NNCF left in floating point: the layers an NNCF model runs in floating point
    (the same rule as the conv-MAC share, ``openvino_layer_map``)."""
    return [layer.name for layer in openvino_layer_map(model).convs if not layer.int8]


def _is_fake_quantize(output) -> bool:
    return output.get_node().get_type_name() == "FakeQuantize"


def _port_name(output) -> str:
    return f"{output.get_node().get_friendly_name()}:{output.get_index()}"


def _openvino_probe(model, names: list[str]):
    """(the names found, a function ``x -> {name: value}``) for ``op friendly name:port`` outputs of an OpenVINO
    model (CPU, f32, exposed as extra outputs); names the model lacks are left out."""
    from ...runtime.probe import open_probe

    ports = {_port_name(op.output(i)): op.output(i) for op in model.get_ordered_ops()
             for i in range(op.get_output_size())}
    wanted = [n for n in names if n in ports]
    model.add_outputs([ports[n] for n in wanted])
    probe = open_probe(model, "openvino")
    offset = len(model.outputs) - len(wanted)

    def run(x: np.ndarray) -> dict:
        results = probe(x)
        return {n: results[offset + i] for i, n in enumerate(wanted)}

    return wanted, run
