"""Tiny models exported in-test for the runtime tests: timm test_efficientnet (gray, 7 classes, 32 px)
to ONNX (legacy exporter, dynamic batch) and OpenVINO IR, spec embedded in both."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZE = 32


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
