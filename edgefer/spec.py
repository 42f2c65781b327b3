"""The preprocessing contract that travels with every model file.

A ``ModelSpec`` says what the network expects (labels, input size, channels, colour order, mean/std,
tensor layout, an optional fixed batch) and what it returns (logits, probabilities or sigmoid scores).
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
LAYOUTS = ("nchw", "nhwc")
# "auto": not declared (a spec without "output"): the runtime detects it from the first outputs
OUTPUT_KINDS = ("logits", "probabilities", "sigmoid", "auto")
MAX_BATCH = 4096
NORM_MIN_STD, NORM_MAX = 1e-6, 1e6  # bounds of std (and of |mean|) the float32 normalisation keeps finite


@dataclass(frozen=True)
class ModelSpec:
    """Input and output contract of a classifier: everything needed to feed it and read its output."""

    labels: tuple[str, ...] = FER2013_LABELS
    input_size: int = 112
    channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    color_order: str = "gray"  # channel order the network was trained on: gray, rgb or bgr (gray may be 3 channels)
    arch: str = ""
    precision: str = "fp32"
    extra: dict = field(default_factory=dict)  # free-form provenance (source checkpoint hash, ...)
    layout: str | None = None  # "nchw" or "nhwc"; None: not stated, inferred from the model's input shape
    output: str = "logits"  # what the network returns: "logits", "probabilities" (softmax) or "sigmoid" scores;
    # "auto" when a spec read from JSON does not say (the runtime detects it from the first outputs)
    batch: int | None = None  # the one batch size the model runs; None: any (dynamic) or as the model file says

    def __post_init__(self):
        object.__setattr__(self, "labels", _as_tuple(self.labels, "labels", str))
        object.__setattr__(self, "mean", _as_tuple(self.mean, "mean", float))
        object.__setattr__(self, "std", _as_tuple(self.std, "std", float))
        if isinstance(self.layout, str):
            object.__setattr__(self, "layout", self.layout.lower())
        self.validate()

    def validate(self, source: str = "model spec") -> None:
        def bad(name, why):
            raise ModelError(f"{source}: field '{name}' {why}")

        if len(self.labels) < 2 or not all(isinstance(s, str) and s for s in self.labels):
            bad("labels", f"must list at least two non-empty class names, got {list(self.labels)!r}")
        if len(set(self.labels)) != len(self.labels):
            bad("labels", f"has duplicates: {list(self.labels)!r}")
        if type(self.input_size) is not int or not 8 <= self.input_size <= 4096:  # True and 112.0 are not
            bad("input_size", f"must be an integer in 8..4096, got {self.input_size!r}")
        if type(self.channels) is not int or self.channels not in (1, 3):
            bad("channels", f"must be 1 or 3, got {self.channels!r}")
        if self.color_order not in COLOR_ORDERS:
            bad("color_order", f"must be one of {', '.join(COLOR_ORDERS)}, got {self.color_order!r}")
        if self.channels == 1 and self.color_order != "gray":
            bad("color_order", f"'{self.color_order}' does not fit channels=1 (use 'gray')")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) != self.channels or not all(math.isfinite(v) for v in values):
                bad(name, f"must hold {self.channels} finite numbers, got {list(values)!r}")
        if any(v <= 0 for v in self.std):
            bad("std", f"must be positive, got {list(self.std)!r}")
        # pixels become (x / 255 - mean) / std in float32: outside these bounds that overflows or loses every digit
        if not all(NORM_MIN_STD <= v <= NORM_MAX for v in self.std):
            bad("std", f"must be in [{NORM_MIN_STD:g}, {NORM_MAX:g}] (pixels are scaled by 1 / (255 std)), "
                       f"got {list(self.std)!r}")
        if not all(abs(v) <= NORM_MAX for v in self.mean):
            bad("mean", f"must be in [{-NORM_MAX:g}, {NORM_MAX:g}], got {list(self.mean)!r}")
        if self.layout is not None and self.layout not in LAYOUTS:
            bad("layout", f"must be one of {', '.join(LAYOUTS)} (or left out to infer it), got {self.layout!r}")
        if self.output not in OUTPUT_KINDS:
            bad("output", f"must be one of {', '.join(OUTPUT_KINDS)}, got {self.output!r}")
        if self.batch is not None and (type(self.batch) is not int or not 1 <= self.batch <= MAX_BATCH):
            bad("batch", f"must be an integer in 1..{MAX_BATCH} (or null for any batch size), got {self.batch!r}")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def input_shape(self, batch: int | None = None) -> tuple[int | None, ...]:
        """The network input shape in this spec's layout (NCHW when not stated); ``batch`` None: ``self.batch``."""
        n = batch if batch is not None else self.batch
        size, channels = self.input_size, self.channels
        if self.layout == "nhwc":
            return (n, size, size, channels)
        return (n, channels, size, size)

    def with_layout_from(self, shape, source: str = "model input") -> ModelSpec:
        """This spec with ``layout`` set: kept when stated, else inferred from ``shape`` (see ``infer_layout``)."""
        if self.layout is not None:
            return self
        return self.replace(layout=infer_layout(shape, source))

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
        kwargs.setdefault("output", "auto")  # not declared: detected from the model's first outputs
        if "extra" in kwargs and not isinstance(kwargs["extra"], dict):
            raise ModelError(f"{source}: field 'extra' must be a JSON object, got {kwargs['extra']!r}")
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


def _as_tuple(values, name: str, kind: type) -> tuple:
    """``values`` (a list/tuple) as a tuple of ``kind``; a lone string or number is refused, not split."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        what = "a list of strings" if kind is str else "a list of numbers"
        raise ModelError(f"model spec: field '{name}' must be {what}, got {values!r}")
    if kind is str:
        return tuple(values)
    try:
        if any(isinstance(v, (bool, str)) for v in values):
            raise TypeError
        return tuple(float(v) for v in values)
    except (TypeError, ValueError, OverflowError):
        raise ModelError(f"model spec: field '{name}' must be a list of numbers, got {list(values)!r}") from None


def infer_layout(shape, source: str = "model input") -> str:
    """"nchw" or "nhwc" from a 4-d input shape (None or non-positive for dynamic dimensions): the layout whose
    channel axis (1 or -1) holds 1 or 3 while the other does not; a ModelError asking to state it otherwise."""
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape] if shape is not None else []
    shown = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
    if len(dims) != 4:
        raise ModelError(f"{source}: shape {shown} is not a 4-d image batch (N, C, H, W) or (N, H, W, C)")
    first, last = dims[1] in (1, 3), dims[3] in (1, 3)
    if first != last:
        return "nchw" if first else "nhwc"
    raise ModelError(f"{source}: cannot tell the layout from the input shape {shown}; "
                     'state it in the sidecar: "layout": "nchw" or "layout": "nhwc"')


def sidecar_path(model_path: str | Path) -> Path:
    """The JSON sidecar that carries the spec for files without metadata: ``model.engine.json``."""
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def read_sidecar(model_path: str | Path, sidecar: str | Path | None = None) -> ModelSpec:
    """Read the spec from ``sidecar`` or from the default ``<model>.json`` next to the model."""
    if sidecar:
        path = Path(sidecar)
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            raise ModelError(f"sidecar {path} {what} (given for {model_path})")
    else:
        path = sidecar_path(model_path)
        if not path.is_file():
            raise ModelError(
                f"{model_path}: no preprocessing metadata in the model and no sidecar {path}; write that file as "
                'JSON: {"labels": [...], "input_size": N, "channels": 1 or 3, "mean": [...], "std": [...]} '
                '(optional: "color_order", "layout", "output", "batch"; see docs/runtime.md, "Bring your own model")'
            )
    shown = os.fsencode(path).decode("utf-8", "backslashreplace")  # a name that is not UTF-8 still prints
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{shown}: cannot read the sidecar ({type(exc).__name__}: {exc})") from None
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
