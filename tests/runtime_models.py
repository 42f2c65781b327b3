"""Tiny models exported in-test for the runtime tests: timm test_efficientnet (gray, 7 classes, 32 px)
to ONNX (legacy exporter, dynamic batch) and OpenVINO IR, spec embedded in both."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZE = 32
# max |logit difference| against the FP32 torch reference, relative to max(1, max |logit|), by the model's stored
# precision and the float precision that executed (OpenVINO reads it back from the compiled model): f32 on f32
# weights is exact up to summation order; f32 on FP16 weights carries the weights' rounding; f16 compute adds
# FP16's 11-bit mantissa, bf16 its 8-bit one (measured 0.0071 on the tiny model on an AVX-512 BF16 CPU); INT8 here
# is calibrated on random noise. BATCH_TOLERANCE: one model at other batch sizes, against itself.
LOGIT_TOLERANCE = {("fp32", "f32"): 1e-4, ("fp16", "f32"): 5e-3, ("fp16", "f16"): 1e-2}
BATCH_TOLERANCE = {"f32": 1e-4, "f16": 5e-3, "bf16": 1e-2}


def logit_tolerance(model_precision: str, executed: str) -> float:
    """The logit tolerance for a model stored in ``model_precision`` (fp32/fp16/int8) that executed in
    ``executed`` (f32/f16/bf16)."""
    if model_precision == "int8":
        return 0.3
    if executed == "bf16":
        return 2e-2
    return LOGIT_TOLERANCE.get((model_precision, executed), LOGIT_TOLERANCE[("fp16", "f16")])


@dataclass
class Exported:
    folder: Path
    onnx: Path
    xml: Path
    model: object  # the torch model, eval mode
    spec: object

    def torch_logits(self, images: np.ndarray) -> np.ndarray:
        """Reference logits: the training-side preprocessing (F.interpolate + normalise) and the torch model."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(images).float()[:, None] / 255
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        x = (x - self.spec.mean[0]) / self.spec.std[0]
        with torch.no_grad():
            return self.model(x).numpy()

    def copy_onnx(self, folder: Path, name: str = "m.onnx", metadata: bool = True) -> Path:
        """A copy of the ONNX model, optionally with the edgefer metadata stripped."""
        import onnx

        target = folder / name
        if metadata:
            shutil.copy(self.onnx, target)
        else:
            proto = onnx.load(str(self.onnx))
            del proto.metadata_props[:]
            onnx.save(proto, str(target))
        return target


_SHARED: dict[str, Exported] = {}


def shared_tiny(tmp_path_factory) -> Exported:
    """One ``export_tiny`` per test process, shared by the runtime test modules (read-only: write variants and
    copies into your own tmp_path)."""
    if "tiny" not in _SHARED:
        _SHARED["tiny"] = export_tiny(tmp_path_factory.mktemp("shared_tiny"))
    return _SHARED["tiny"]


def export_tiny(folder: Path) -> Exported:
    import onnx
    import openvino as ov
    import torch

    from edgefer.models import create_model, spec_for
    from edgefer.spec import embed_in_onnx, embed_in_openvino

    torch.manual_seed(0)
    model = create_model("test_efficientnet", num_classes=7, in_chans=1, drop_rate=0.0, drop_path_rate=0.0).eval()
    with torch.no_grad():
        model.get_classifier().weight.mul_(200)  # random init gives near-uniform logits; spread them out
    spec = spec_for(model, SIZE, arch="test_efficientnet")
    onnx_path = folder / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter: ~5x faster than dynamo here
        torch.onnx.export(model, torch.zeros(1, 1, SIZE, SIZE), str(onnx_path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(str(onnx_path))
    embed_in_onnx(proto, spec)
    onnx.save(proto, str(onnx_path))
    ov_model = ov.convert_model(str(onnx_path))
    embed_in_openvino(ov_model, spec)
    xml_path = folder / "tiny.xml"
    ov.save_model(ov_model, str(xml_path), compress_to_fp16=False)
    return Exported(folder, onnx_path, xml_path, model, spec)


def cartoon_face(size: int = 150, frame: tuple[int, int] = (240, 320)) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A synthetic BGR frame with one drawn cartoon face that OpenCV's frontal Haar cascade detects,
    and the face's approximate box (x, y, w, h)."""
    import cv2

    height, width = frame
    img = np.full((height, width), 60, np.uint8)
    cx, cy = width // 2, height // 2
    cv2.ellipse(img, (cx, cy), (int(size * 0.38), int(size * 0.5)), 0, 0, 360, 190, -1)  # skin
    for side in (-1, 1):
        ex, ey = cx + side * int(size * 0.17), cy - int(size * 0.1)
        cv2.ellipse(img, (ex, ey - int(size * 0.09)), (int(size * 0.1), int(size * 0.025)), 0, 0, 360, 70, -1)
        cv2.ellipse(img, (ex, ey), (int(size * 0.08), int(size * 0.045)), 0, 0, 360, 40, -1)
    cv2.ellipse(img, (cx, cy + int(size * 0.12)), (int(size * 0.05), int(size * 0.03)), 0, 0, 360, 120, -1)
    cv2.ellipse(img, (cx, cy + int(size * 0.27)), (int(size * 0.14), int(size * 0.04)), 0, 0, 360, 60, -1)
    img = cv2.GaussianBlur(img, (0, 0), size / 60)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), (cx - size // 2, cy - size // 2, size, size)


# The input scales a foreign model may expect, as the (mean, std) its sidecar states for 1 channel:
# the network sees (pixel / 255 - mean) / std.
SCALES = {"0..255": (0.0, 1 / 255), "0..1": (0.0, 1.0), "-1..1": (0.5, 0.5)}


def foreign_variant(tiny: Exported, folder: Path, name: str, *, layout: str = "nchw", gray3: bool = False,
                    batch: int | None = None, output: str = "logits", perm: list[int] | None = None,
                    scale: str | None = None, sidecar_fields: dict | None = None) -> tuple[Path, object]:
    """``tiny``'s ONNX model reshaped as models from other tools come: an NHWC input (an ONNX Transpose in
    front), a gray network taking 3 replicated channels (ReduceMean over them), a fixed batch, softmax or
    sigmoid outputs, permuted classes (a Gather on the outputs, labels permuted to match), another input
    scale (Mul + Add in front). No edgefer metadata; the sidecar ``<name>.json`` gets the matching spec
    (without "layout" unless ``sidecar_fields`` states it). Returns (model path, spec written)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load(str(tiny.onnx))
    del proto.metadata_props[:]
    graph = proto.graph
    core_in, core_out = graph.input[0].name, graph.output[0].name
    for node in graph.node:
        node.input[:] = ["core_in" if n == core_in else n for n in node.input]
        node.output[:] = ["core_out" if n == core_out else n for n in node.output]
    channels = 3 if gray3 else 1
    pre, post, cur = [], [], "x"
    if layout == "nhwc":
        pre.append(helper.make_node("Transpose", [cur], ["x_nchw"], perm=[0, 3, 1, 2]))
        cur = "x_nchw"
    if gray3:
        pre.append(helper.make_node("ReduceMean", [cur], ["x_gray"], axes=[1], keepdims=1))
        cur = "x_gray"
    spec = tiny.spec
    mean, std = spec.mean[0], spec.std[0]
    if scale:
        mean, std = SCALES[scale]
        a, b = std / spec.std[0], (mean - spec.mean[0]) / spec.std[0]
        graph.initializer.extend([numpy_helper.from_array(np.array(a, np.float32), "scale_a"),
                                  numpy_helper.from_array(np.array(b, np.float32), "scale_b")])
        pre += [helper.make_node("Mul", [cur, "scale_a"], ["x_mul"]), helper.make_node("Add", ["x_mul", "scale_b"], [cur := "x_add"])]
    pre.append(helper.make_node("Identity", [cur], ["core_in"]))
    cur, labels = "core_out", list(spec.labels)
    if perm is not None:
        graph.initializer.append(numpy_helper.from_array(np.array(perm, np.int64), "perm"))
        post.append(helper.make_node("Gather", [cur, "perm"], [cur := "permuted"], axis=1))
        labels = [labels[i] for i in perm]
    if output != "logits":
        op = {"probabilities": "Softmax", "sigmoid": "Sigmoid"}[output]
        post.append(helper.make_node(op, [cur], [cur := "scores"], **({"axis": 1} if op == "Softmax" else {})))
    post.append(helper.make_node("Identity", [cur], ["out"]))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(pre + nodes + post)
    n = batch if batch is not None else "batch"
    shape = [n, SIZE, SIZE, channels] if layout == "nhwc" else [n, channels, SIZE, SIZE]
    del graph.input[0]
    graph.input.insert(0, helper.make_tensor_value_info("x", TensorProto.FLOAT, shape))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("out", TensorProto.FLOAT, [n, len(labels)]))
    del graph.value_info[:]
    onnx.checker.check_model(proto)
    path = folder / f"{name}.onnx"
    onnx.save(proto, str(path))
    written = spec.replace(labels=labels, channels=channels, mean=(mean,) * channels, std=(std,) * channels,
                           color_order="gray", output=output, **(sidecar_fields or {}))
    data = written.to_dict()
    if "layout" not in (sidecar_fields or {}):
        del data["layout"]  # as a user writes it: the runtime reads the layout from the input shape
    (folder / f"{name}.onnx.json").write_text(__import__("json").dumps(data))
    return path, written
