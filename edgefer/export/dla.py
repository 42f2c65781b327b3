"""Which nodes of an ONNX graph NVIDIA's DLA cannot run (Jetson Orin NX / AGX Orin, TensorRT 10.x).

Read from the graph alone (no TensorRT needed), against NVIDIA's "DLA Supported Layers and Restrictions"
(https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/dla-layer-restrictions.html):
general limits (static shapes, batch <= 4096, non-batch dimensions <= 8192) and the per-layer table
(Activation: ReLU, Sigmoid, TanH, Clipped ReLU, Leaky ReLU; Convolution / Fully Connected: 2D, kernel [1, 32],
stride [1, 8], channels [1, 8192]; Deconvolution: 2D, not grouped or dilated, padding 0; ElementWise: Sum, Sub,
Product, Max, Min, Div, Pow; Concatenation: channel axis only; Comparison: INT8 only).

Each finding is ``certain`` (an op type outside DLA's layer table, or a published limit exceeded: the layer runs
on the GPU with ``--allow-gpu-fallback``, else the build fails) or not (a layer DLA has but whose limits this
report does not check, e.g. pooling windows or reductions; TensorRT's verbose build log has the last word).
Shape arithmetic that TensorRT folds at build time for static shapes is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import require

SOURCE = "https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/dla-layer-restrictions.html"
MAX_BATCH, MAX_DIM, MAX_CHANNELS = 4096, 8192, 8192
KERNEL, STRIDE = (1, 32), (1, 8)
ACTIVATIONS = {"Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu"}
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"}
COMPARISONS = {"Equal", "Greater", "Less"}
NO_OPS = {"Identity", "Dropout", "Constant", "QuantizeLinear", "DequantizeLinear"}  # removed or fused by TensorRT
# DLA layers whose detailed limits this report does not check (ONNX op -> TensorRT layer)
UNCHECKED = {
    "MaxPool": "Pooling", "AveragePool": "Pooling", "GlobalAveragePool": "Pooling", "GlobalMaxPool": "Pooling",
    "ReduceMean": "Reduce", "ReduceMax": "Reduce", "ReduceSum": "Reduce", "Softmax": "SoftMax",
    "Resize": "Resize", "Slice": "Slice", "Reshape": "Shuffle", "Flatten": "Shuffle", "Transpose": "Shuffle",
    "Squeeze": "Shuffle", "Unsqueeze": "Shuffle", "BatchNormalization": "Scale", "LRN": "LRN",
    "PRelu": "Parametric ReLU", "Abs": "Unary", "Sin": "Unary", "Cos": "Unary", "Atan": "Unary",
    "Gemm": "Fully Connected (TensorRT 10 parses it as a matrix multiply)",
    "MatMul": "Fully Connected (TensorRT 10 parses it as a matrix multiply)",
    "Pad": "Padding (TensorRT fuses zero padding into the next convolution)",
}


@dataclass(frozen=True)
class DlaFinding:
    """One node DLA may not run: why, and whether that is certain from NVIDIA's published restrictions."""

    node: str
    op_type: str
    reason: str
    certain: bool


@dataclass
class DlaReport:
    """The DLA check of one ONNX graph (``findings`` in graph order; ``graph`` for whole-graph limits)."""

    onnx: str
    nodes: int
    findings: list[DlaFinding] = field(default_factory=list)
    graph: list[str] = field(default_factory=list)
    source: str = SOURCE

    @property
    def unsupported(self) -> list[DlaFinding]:
        return [f for f in self.findings if f.certain]

    @property
    def unchecked(self) -> list[DlaFinding]:
        return [f for f in self.findings if not f.certain]

    def lines(self, limit: int = 20) -> list[str]:
        """Human-readable summary: counts per op type, then the first ``limit`` certain findings."""
        out = [f"DLA check of {self.onnx} ({self.nodes} nodes; rules: {self.source})"]
        out += [f"  graph: {issue}" for issue in self.graph]
        for title, group in (("not on DLA", self.unsupported), ("DLA layer, limits not checked", self.unchecked)):
            counts: dict[str, int] = {}
            for f in group:
                counts[f.op_type] = counts.get(f.op_type, 0) + 1
            if counts:
                out.append(f"  {title}: " + ", ".join(f"{op} x{n}" for op, n in sorted(counts.items())))
        out += [f"    {f.node} ({f.op_type}): {f.reason}" for f in self.unsupported[:limit]]
        if len(self.unsupported) > limit:
            out.append(f"    ... {len(self.unsupported) - limit} more")
        return out


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            from onnx import helper

            return helper.get_attribute_value(a)
    return default


def _shapes(proto) -> dict[str, list]:
    infos = list(proto.graph.value_info) + list(proto.graph.input) + list(proto.graph.output)
    shapes = {}
    for vi in infos:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    return shapes


def _folded(proto) -> set[str]:
    """Tensors TensorRT computes at build time for static shapes: from initializers, Constants and Shape."""
    folded = {t.name for t in proto.graph.initializer} | {""}
    for node in proto.graph.node:
        if node.op_type == "Shape" or all(i in folded for i in node.input):
            folded.update(node.output)
    return folded


def _check_conv(node, weights, shapes) -> str | None:
    kernel = list(_attr(node, "kernel_shape", []) or (list(weights[node.input[1]].dims[2:])
                                                       if node.input[1] in weights else []))
    if kernel and len(kernel) != 2:
        return f"{len(kernel)}D convolution (DLA: 2D only)"
    if any(not KERNEL[0] <= k <= KERNEL[1] for k in kernel):
        return f"kernel {kernel} outside [{KERNEL[0]}, {KERNEL[1]}]"
    strides = list(_attr(node, "strides", []) or [])
    if any(not STRIDE[0] <= s <= STRIDE[1] for s in strides):
        return f"stride {strides} outside [{STRIDE[0]}, {STRIDE[1]}]"
    if node.input[1] in weights:
        dims = list(weights[node.input[1]].dims)
        channels = dims[0] if node.op_type == "Conv" else dims[1] * int(_attr(node, "group", 1))
        if not 1 <= channels <= MAX_CHANNELS:
            return f"{channels} output channels outside [1, {MAX_CHANNELS}]"
    if node.op_type == "ConvTranspose":
        if int(_attr(node, "group", 1)) != 1 or any(d != 1 for d in (_attr(node, "dilations", []) or [])):
            return "grouped or dilated deconvolution (DLA: neither)"
        if any(p != 0 for p in (_attr(node, "pads", []) or [])):
            return "deconvolution with padding (DLA: padding must be 0)"
    return None


def _check_node(node, weights, shapes) -> tuple[str, bool] | None:
    """(reason, certain) when DLA may not run ``node``; None when it can."""
    op = node.op_type
    out_shape = shapes.get(node.output[0]) if node.output else None
    if op in NO_OPS:
        return None
    if out_shape and len(out_shape) not in (0, 4) and op in ACTIVATIONS | ELEMENTWISE | {"Conv", "ConvTranspose"}:
        return f"{len(out_shape)}D tensor (DLA runs 2D layers on N x C x H x W tensors)", True
    if op in ("Conv", "ConvTranspose"):
        problem = _check_conv(node, weights, shapes)
        return (problem, True) if problem else None
    if op in ACTIVATIONS or op in ELEMENTWISE:
        return None
    if op in COMPARISONS:
        return "comparison layers run on DLA in INT8 only, with the output cast at once", False
    if op == "Concat":
        axis = int(_attr(node, "axis", 1))
        rank = len(out_shape) if out_shape else 4
        return None if axis in (1, 1 - rank) else (f"concatenation on axis {axis} (DLA: channel axis only)", True)
    if op in UNCHECKED:
        return f"DLA {UNCHECKED[op]} layer: limits not checked here", False
    return f"{op} is not in DLA's supported layers (runs on the GPU with --allow-gpu-fallback)", True


def dla_report(onnx_path: str | Path, batch: int | None = None) -> DlaReport:
    """Check every node of ``onnx_path`` against NVIDIA's DLA layer restrictions.

    ``batch``: the engine's fixed batch (DLA needs min = opt = max); None reports a dynamic batch dimension.
    """
    onnx = require("onnx", "onnx", "reading ONNX models")
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    weights = {t.name: t for t in proto.graph.initializer}
    shapes = _shapes(proto)
    report = DlaReport(Path(onnx_path).name, len(proto.graph.node))
    for tensor in proto.graph.input:
        if tensor.name in weights:
            continue
        dims = shapes.get(tensor.name, [])
        if dims and dims[0] is None and batch is None:
            report.graph.append(f"input {tensor.name!r} has a dynamic batch: DLA needs a fixed one "
                                f"(build with --batch N, min = opt = max)")
        if batch is not None and not 1 <= batch <= MAX_BATCH:
            report.graph.append(f"batch {batch} outside [1, {MAX_BATCH}]")
        if any(d is not None and d > MAX_DIM for d in dims[1:]):
            report.graph.append(f"input {tensor.name!r} {dims}: a non-batch dimension exceeds {MAX_DIM}")
    folded = _folded(proto)
    for node in proto.graph.node:
        if node.output and all(o in folded for o in node.output):
            continue  # shape arithmetic: folded at build time
        found = _check_node(node, weights, shapes)
        if found:
            report.findings.append(DlaFinding(node.name or node.output[0], node.op_type, *found))
    return report
