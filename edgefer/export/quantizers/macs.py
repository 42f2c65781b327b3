"""How much of a network's convolution arithmetic a quantized model runs in INT8.

A convolution layer is a Conv, ConvTranspose or Gemm node (a MatMul with a constant weight counts as a Gemm).
Its multiply-accumulates per image, from the shapes ONNX shape inference gives:

    Conv / Gemm / MatMul:  prod(output shape without batch) * prod(weight shape without its output dimension)
                           = out_h * out_w * out_c * (in_c / group) * kh * kw   (Conv)
                           = out_features * in_features                         (Gemm)
    ConvTranspose:         prod(input shape without batch) * prod(weight shape without its input dimension)

In an ONNX Runtime Q/DQ graph a layer runs in INT8 when both its activation input and its weight are
quantized (a ``DequantizeLinear`` produces them); otherwise TensorRT and ONNX Runtime run it in floating point.
The OpenVINO (NNCF) counterpart is in ``quantizers.nncf``: there a layer is INT8 when NNCF quantized its
weight (a FakeQuantize or compressed integer weights on the weight path; NNCF quantizes a layer's weights
exactly when it quantizes the layer, its activation FakeQuantize possibly above a Reshape; an op in the
ignored scope keeps FP32 weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

CONV_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # ONNX op types that count as convolution layers


@dataclass(frozen=True)
class ConvLayer:
    """One convolution layer: node name, op type, multiply-accumulates per image, and whether it runs in INT8."""

    name: str
    op: str
    macs: int
    int8: bool


@dataclass(frozen=True)
class LayerMap:
    """What the MAC share and the "kept in float" report need from a quantized model: every node's op type
    (by name) and the convolution layers in graph order."""

    ops: dict
    convs: tuple

    def share(self) -> dict:
        """``{"share": int8 MACs / all conv MACs (None without convolutions), "int8": ..., "total": ...}``."""
        total = sum(layer.macs for layer in self.convs)
        int8 = sum(layer.macs for layer in self.convs if layer.int8)
        return {"share": (int8 / total) if total else None, "int8": int(int8), "total": int(total)}

    def kept_in_float(self, excluded) -> list[dict]:
        """The nodes the search kept in floating point (``excluded``) and every other convolution layer the model
        runs in floating point (``--keep-fp``, the quantizer's own choice), with op types and conv MACs."""
        macs = {layer.name: layer.macs for layer in self.convs}
        names = list(dict.fromkeys([*excluded, *(layer.name for layer in self.convs if not layer.int8)]))
        return [{"node": name, "op": self.ops.get(name), "conv_macs": macs.get(name)} for name in names]


def onnx_layer_map(proto, measure=None) -> LayerMap:
    """The convolution layers of an ONNX graph (FP32 or Q/DQ) with their MACs per image and INT8 status.

    Shapes come from ONNX shape inference; ``measure`` (``names -> {name: shape}``, e.g. one batch-1 run of the
    model) supplies those it cannot infer (TensorFlow-style "same" padding computes its pads from the input
    shape at run time, which leaves every later shape unknown)."""
    import onnx

    shapes = _static_shapes(proto)
    nodes = list(proto.graph.node)
    if measure is not None:
        wanted = [t for node in nodes if node.op_type in CONV_OP_TYPES and len(node.input) >= 2
                  for t in (node.input[0], node.input[1], node.output[0]) if t not in shapes]
        if wanted:
            shapes.update({name: tuple(shape) for name, shape in measure(list(dict.fromkeys(wanted))).items()})
    producers = {out: node for node in nodes for out in node.output}
    constants = _constants(proto.graph)

    def dequantized(tensor: str) -> bool:
        node = producers.get(tensor)
        return node is not None and node.op_type == "DequantizeLinear"

    convs = []
    for node in nodes:
        if node.op_type not in CONV_OP_TYPES or len(node.input) < 2:
            continue
        weight, activation = node.input[1], node.input[0]
        if node.op_type in ("MatMul", "Gemm") and weight not in constants:
            continue  # activation x activation (attention): not a weighted layer
        macs = _macs(node, shapes, onnx)
        if macs is None:
            continue
        convs.append(ConvLayer(node.name, node.op_type, macs, dequantized(activation) and dequantized(weight)))
    return LayerMap({node.name: node.op_type for node in nodes}, tuple(convs))


def _macs(node, shapes: dict, onnx) -> int | None:
    weight = shapes.get(node.input[1])
    out = shapes.get(node.output[0])
    if weight is None or out is None or len(out) < 2:
        return None
    if node.op_type == "Conv":
        return prod(out[1:]) * prod(weight[1:])
    if node.op_type == "ConvTranspose":
        x = shapes.get(node.input[0])
        return None if x is None else prod(x[1:]) * prod(weight[1:])
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Gemm":
        k = weight[1] if attrs.get("transB", 0) else weight[0]
    else:  # MatMul x @ W: W is (..., K, N)
        k = weight[-2] if len(weight) >= 2 else weight[0]
    return prod(out[1:]) * k


def _static_shapes(proto) -> dict:
    """Tensor name -> shape (batch dimension forced to 1 for inference) for every tensor whose shape is known."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = 1
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)  # pads computed from shapes (tf_ "same")
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    for value in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for node in model.graph.node:  # Constant nodes (weights a converter emitted as nodes)
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = tuple(attr.t.dims)
    return shapes


def _constants(graph) -> set:
    """Tensors computed from initializers and Constant nodes only (a weight, possibly behind a DequantizeLinear)."""
    constant = {t.name for t in graph.initializer} | {""}
    for node in graph.node:
        if node.op_type == "Constant" or all(i in constant for i in node.input):
            constant.update(node.output)
    return constant
