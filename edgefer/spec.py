"""The preprocessing contract that travels with every model file.

A ``ModelSpec`` says what the network expects (labels, input size, channels, colour order, mean/std).
It is stored in the model itself — ONNX ``metadata_props`` and OpenVINO ``rt_info`` under
``METADATA_KEY`` — and in a JSON sidecar for TensorRT engines or a user's own ONNX, so nothing
downstream guesses. Standard library only: the torch-free runtime imports this module.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ModelError

FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
METADATA_KEY = "edgefer.spec"
SPEC_VERSION = 1
COLOR_ORDERS = ("gray", "rgb", "bgr")


@dataclass(frozen=True)
class ModelSpec:
    """Input and output contract of a classifier: everything needed to feed it and read its output."""

    labels: tuple[str, ...] = FER2013_LABELS
    input_size: int = 112
    channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    color_order: str = "gray"  # channel order the network was trained on: gray, rgb or bgr
    arch: str = ""
    precision: str = "fp32"
    extra: dict = field(default_factory=dict)  # free-form provenance (source checkpoint hash, ...)

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        self.validate()

    def validate(self, source: str = "model spec") -> None:
        def bad(name, why):
            raise ModelError(f"{source}: field '{name}' {why}")

        if len(self.labels) < 2 or not all(isinstance(s, str) and s for s in self.labels):
            bad("labels", f"must list at least two non-empty class names, got {list(self.labels)!r}")
        if len(set(self.labels)) != len(self.labels):
            bad("labels", f"has duplicates: {list(self.labels)!r}")
        if not isinstance(self.input_size, int) or not 8 <= self.input_size <= 4096:
            bad("input_size", f"must be an integer in 8..4096, got {self.input_size!r}")
        if self.channels not in (1, 3):
            bad("channels", f"must be 1 or 3, got {self.channels!r}")
        if self.color_order not in COLOR_ORDERS:
            bad("color_order", f"must be one of {', '.join(COLOR_ORDERS)}, got {self.color_order!r}")
        if (self.channels == 1) != (self.color_order == "gray"):
            bad("color_order", f"'{self.color_order}' does not fit channels={self.channels}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) != self.channels or not all(math.isfinite(v) for v in values):
                bad(name, f"must hold {self.channels} finite numbers, got {list(values)!r}")
        if any(v <= 0 for v in self.std):
            bad("std", f"must be positive, got {list(self.std)!r}")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def replace(self, **changes) -> ModelSpec:
        fields = {k: v for k, v in self.to_dict().items() if k != "spec_version"}
        return ModelSpec(**{**fields, **changes})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["labels"], d["mean"], d["std"] = list(self.labels), list(self.mean), list(self.std)
        return {"spec_version": SPEC_VERSION, **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict, source: str = "model spec") -> ModelSpec:
        if not isinstance(data, dict):
            raise ModelError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        missing = [f for f in ("labels", "input_size", "channels", "mean", "std") if f not in data]
        if missing:
            raise ModelError(f"{source}: missing field(s) {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs.setdefault("color_order", "gray" if data["channels"] == 1 else "rgb")
        try:
            spec = cls(**kwargs)
        except ModelError as exc:
            raise ModelError(str(exc).replace("model spec", source, 1)) from None
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: float(10**400)
            raise ModelError(f"{source}: {exc}") from None
        return spec

    @classmethod
    def from_json(cls, text: str, source: str = "model spec") -> ModelSpec:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 5000-digit number, [[[[... nested deep
            raise ModelError(f"{source}: not valid JSON ({str(exc)[:200]})") from None
        return cls.from_dict(data.get("spec", data) if isinstance(data, dict) else data, source)


def sidecar_path(model_path: str | Path) -> Path:
    """The JSON sidecar that carries the spec for files without metadata: ``model.engine.json``."""
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def read_sidecar(model_path: str | Path, sidecar: str | Path | None = None) -> ModelSpec:
    """Read the spec from ``sidecar`` or from the default ``<model>.json`` next to the model."""
    path = Path(sidecar) if sidecar else sidecar_path(model_path)
    if not path.is_file():
        raise ModelError(
            f"{model_path}: no preprocessing metadata; expected a JSON sidecar at {path} "
            "(labels, input_size, channels, mean, std, color_order)"
        )
    shown = os.fsencode(path).decode("utf-8", "backslashreplace")  # a name that is not UTF-8 still prints
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(f"{shown}: not a JSON text file (not UTF-8: {exc.reason})") from None
    return ModelSpec.from_json(text, source=shown)


def embed_in_onnx(model_proto, spec: ModelSpec) -> None:
    """Store ``spec`` in an ONNX ModelProto's ``metadata_props`` (replacing an older entry)."""
    for i in reversed(range(len(model_proto.metadata_props))):
        if model_proto.metadata_props[i].key == METADATA_KEY:
            del model_proto.metadata_props[i]
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, spec.to_json()


def embed_in_openvino(ov_model, spec: ModelSpec) -> None:
    """Store ``spec`` in an OpenVINO model's ``rt_info`` (saved in the IR .xml)."""
    ov_model.set_rt_info(spec.to_json(), [METADATA_KEY])
