"""INT8 ONNX for ONNX Runtime's own CPU kernels (x86 and ARM), calibrated on a calibration bundle.

The TensorRT Q/DQ graph (``qdq.py``: symmetric INT8 activations, FP32 biases) is what TensorRT wants and what
ONNX Runtime's CPU provider runs slowly: its fused integer kernels (QLinearConv, QLinearAdd, QLinearMul,
QLinearSigmoid, QLinearGlobalAveragePool) are chosen when activations are **uint8 (asymmetric)**, weights
**int8** (per channel), biases **int32**, and every Conv has a quantized input *and* output (U8S8, the format
ONNX Runtime's quantization guide recommends for x86-64 and ARM:
https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html).

``quantize_for_ort_cpu(fp32_onnx, out, calib, config)`` makes one such graph, in either of ORT's two formats:

- ``qdq``: QuantizeLinear/DequantizeLinear pairs around float ops; ORT fuses DQ -> op -> Q into the QLinear
  kernels when the session is created (the portable format);
- ``qoperator``: the QLinear ops written into the file directly.

Before quantizing, ``ReduceMean`` over H and W (the squeeze-excitation pools of EfficientNet) becomes the
equivalent ``GlobalAveragePool``, which has an integer kernel, so the SE branch stays in INT8 instead of
leaving the integer graph for a float ReduceMean at every block.

Saturation on x86 without VNNI: the AVX2/AVX-512 U8S8 kernels multiply-add pairs of u8 x s8 products into
int16 (``vpmaddubsw``), which can saturate for large weights; ``reduce_range=True`` (the default) quantizes
weights to 7 bits to rule it out (the guide's advice; CPUs with VNNI and ARM do not need it). Measured on an
AVX2-only AMD EPYC with a random-init ``test_efficientnet``: top-1 agreement with FP32 0.74 with 8-bit weights,
0.94 with ``reduce_range``; the file then gives the same answers on every CPU, at no speed cost.
"""

from __future__ import annotations

import collections
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ExportError, ModelError, require
from ..spec import METADATA_KEY, ModelSpec
from .act_ranges import collect_ranges, tensors_to_calibrate
from .calibration import CalibrationSet
from .onnx import save_onnx

FORMATS = ("qdq", "qoperator")
CALIB_METHODS = ("moving-average", "minmax")
OP_SETS = ("all", "conv")  # every op ORT can quantize / only Conv, Gemm and MatMul
_CONV_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class OrtInt8Config:
    """How to quantize for ONNX Runtime's CPU provider (defaults: the fastest measured setting)."""

    format: str = "qdq"  # qdq | qoperator
    ops: str = "all"  # all: every op ORT quantizes (QLinear Add/Mul/Sigmoid/pool too); conv: Conv/Gemm/MatMul
    calib_method: str = "moving-average"  # MinMax ranges, averaged over batches (moving-average) or not
    per_channel: bool = True  # per-output-channel weight scales
    reduce_range: bool = True  # 7-bit weights: no u8 x s8 saturation on x86 CPUs without VNNI (see module doc)
    global_pool: bool = True  # ReduceMean over H, W -> GlobalAveragePool (has an integer kernel)
    batch_size: int = 32  # calibration batch
    exclude: tuple[str, ...] = ()  # node names left in float

    def validate(self) -> OrtInt8Config:
        for name, value, allowed in (("format", self.format, FORMATS), ("ops", self.ops, OP_SETS),
                                     ("calib_method", self.calib_method, CALIB_METHODS)):
            if value not in allowed:
                raise ExportError(f"ONNX Runtime INT8: {name} {value!r} is not supported; use one of "
                                  f"{', '.join(allowed)}")
        if self.batch_size < 1:
            raise ExportError(f"ONNX Runtime INT8: batch_size must be >= 1, got {self.batch_size}")
        return self


@dataclass(frozen=True)
class OrtInt8Result:
    """What ``quantize_for_ort_cpu`` wrote."""

    path: Path
    config: OrtInt8Config
    calib_images: int
    seconds: float
    op_counts: dict[str, int] = field(default_factory=dict)  # op type -> nodes in the written graph
    pools_rewritten: int = 0  # ReduceMean nodes replaced by GlobalAveragePool

    def to_dict(self) -> dict:
        """JSON-ready summary (for export.json)."""
        return {"quantizer": "onnxruntime", "target_runtime": "onnxruntime-cpu", "path": str(self.path),
                **{f"config_{k}": (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.config).items()},
                "activations": "uint8 asymmetric", "weights": "int8 symmetric" + (
                    " per-channel" if self.config.per_channel else "") + (" 7-bit" if self.config.reduce_range else ""),
                "bias": "int32", "calib_images": self.calib_images, "seconds": self.seconds,
                "op_counts": dict(self.op_counts), "pools_rewritten": self.pools_rewritten}


def quantize_for_ort_cpu(fp32_onnx_path: str | Path, out_path: str | Path, calib: CalibrationSet,
                         config: OrtInt8Config | None = None, spec: ModelSpec | None = None) -> OrtInt8Result:
    """Quantize the FP32 ONNX model at ``fp32_onnx_path`` for ONNX Runtime's CPU provider; write ``out_path``.

    ``spec`` defaults to the one embedded in the FP32 model; the written model embeds it with
    ``precision="int8"`` and the quantization settings in ``extra["quantization"]``.
    """
    config = (config or OrtInt8Config()).validate()
    onnx = require("onnx", "onnx", "INT8 quantization")
    ort = require("onnxruntime", "onnx", "INT8 quantization")
    ort.set_default_logger_severity(3)  # quant_pre_process's session warns about every unused initializer
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_onnx_path = Path(fp32_onnx_path)
    proto = onnx.load(str(fp32_onnx_path))
    spec = spec or _embedded_spec(proto, fp32_onnx_path)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgefer-ort-int8-") as tmp:
        rewritten, prepared, quantized = (Path(tmp) / n for n in ("pool.onnx", "prepared.onnx", "quantized.onnx"))
        pools = reduce_mean_to_global_pool(proto) if config.global_pool else 0
        onnx.save(proto, str(rewritten))
        quant_pre_process(str(rewritten), str(prepared))
        # ranges batch by batch, reduced inside the graph (edgefer.export.act_ranges): ONNX Runtime's own
        # calibrator keeps every intermediate tensor of every image (11 GiB at 224 px for tf_efficientnetv2_s)
        op_types = _CONV_OPS if config.ops == "conv" else None
        names = tensors_to_calibrate(onnx.load(str(prepared)), op_types)
        ranges = collect_ranges(prepared, calib.batches(spec, config.batch_size), names, method=config.calib_method,
                                desc="calibrate (ONNX Runtime INT8)")
        cache = ranges.save_ort_cache(Path(tmp) / "ranges.json", asymmetric=True)
        quantize_static(
            str(prepared), str(quantized), None, calibration_cache_path=str(cache),
            quant_format=QuantFormat.QDQ if config.format == "qdq" else QuantFormat.QOperator,
            op_types_to_quantize=list(op_types) if op_types else None,
            per_channel=config.per_channel, reduce_range=config.reduce_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(config.exclude),
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "QuantizeBias": True},
        )
        result = onnx.load(str(quantized))
    seconds = round(time.perf_counter() - start, 3)
    counts = dict(sorted(collections.Counter(n.op_type for n in result.graph.node).items()))
    out = OrtInt8Result(Path(out_path), config, len(calib), seconds, counts, pools)
    info = {k: v for k, v in out.to_dict().items() if k not in ("path", "op_counts")}
    save_onnx(result, out_path, spec.replace(precision="int8", extra={**spec.extra, "quantization": info}))
    return out


def reduce_mean_to_global_pool(proto) -> int:
    """Replace every 4-D ``ReduceMean`` over axes (2, 3) with ``keepdims=1`` by ``GlobalAveragePool``, in place.

    Same output; GlobalAveragePool has an integer kernel in ONNX Runtime, ReduceMean does not. Returns how many
    nodes were replaced. Axes come from the attribute (opset < 18) or a constant initializer (opset >= 18).
    """
    from onnx import helper, numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    replaced = 0
    for i, node in enumerate(proto.graph.node):
        if node.op_type != "ReduceMean":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1] in constants:
            axes = constants[node.input[1]].tolist()
        if axes is None or attrs.get("keepdims", 1) != 1 or sorted(int(a) % 4 for a in axes) != [2, 3]:
            continue
        if any(a < 0 for a in axes) and not _rank4(proto, node.input[0]):
            continue  # negative axes count from the end: only H, W when the input is 4-D
        pool = helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name or None)
        proto.graph.node[i].CopyFrom(pool)
        replaced += 1
    return replaced


def _rank4(proto, name: str) -> bool:
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(proto)
    for info in list(inferred.graph.value_info) + list(inferred.graph.input):
        if info.name == name:
            return len(info.type.tensor_type.shape.dim) == 4
    return False


def _embedded_spec(proto, path: Path) -> ModelSpec:
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            return ModelSpec.from_json(prop.value, source=f"{path} metadata")
    raise ModelError(f"{path}: no edgefer spec in metadata_props; pass spec= (labels, input size, normalisation)")
