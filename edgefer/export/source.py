"""What an export starts from: an edgefer checkpoint (torch model + spec) or any ONNX image classifier
whose preprocessing spec comes from its metadata or a JSON sidecar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError, require
from ..fileio import sha256_file
from ..spec import METADATA_KEY, ModelSpec, read_sidecar, sidecar_path


@dataclass
class Source:
    """The model to export. ``kind`` is "checkpoint" (``torch_model`` set) or "onnx" (``onnx_path`` set)."""

    kind: str
    path: Path
    spec: ModelSpec
    sha256: str  # of the weights file (checkpoint) or the ONNX file
    torch_model: object = None
    onnx_path: Path | None = None


def open_source(path: str | Path, sidecar: str | Path | None = None, *, option: str = "--model") -> Source:
    """Open ``path``: a checkpoint directory / ``model.json`` / ``best.safetensors``, or an ``.onnx`` file.

    For ONNX the spec comes from ``sidecar`` if given, else the model's ``edgefer.spec`` metadata, else the
    default sidecar ``<model>.onnx.json``; the model's input and output shapes are checked against it.
    ``option``: how the command names the path in errors (an option or a positional argument).
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{option} {path}: no such file or directory")
    if path.suffix.lower() == ".onnx":
        return _open_onnx(path, sidecar)
    if path.is_file() and path.suffix.lower() not in (".json", ".safetensors"):
        kind = {".xml": "an OpenVINO IR", ".bin": "OpenVINO weights", ".engine": "a TensorRT engine",
                ".plan": "a TensorRT engine"}.get(path.suffix.lower(), "not a model file edgefer exports from")
        raise ModelError(f"{option} {path}: {kind}; export starts from an edgefer checkpoint (run directory, "
                         "model.json or best.safetensors) or an ONNX model (.onnx)")
    from ..models import checkpoint_paths, load_checkpoint

    weights, _ = checkpoint_paths(path)
    model, spec, meta = load_checkpoint(path)
    return Source("checkpoint", path, spec, meta.get("weights_sha256") or sha256_file(weights), torch_model=model)


def _open_onnx(path: Path, sidecar: str | Path | None) -> Source:
    onnx = require("onnx", "onnx", "reading ONNX models")
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    embedded = {p.key: p.value for p in proto.metadata_props}.get(METADATA_KEY)
    if sidecar is None and embedded is not None:
        spec = ModelSpec.from_json(embedded, source=f"{path} metadata '{METADATA_KEY}'")
    else:
        spec = read_sidecar(path, sidecar)
    spec = _check_onnx_io(proto, spec, path, sidecar or sidecar_path(path))
    return Source("onnx", path, spec, sha256_file(path), onnx_path=path)


def _check_onnx_io(proto, spec: ModelSpec, path: Path, spec_source) -> ModelSpec:
    """Check the model's input/output against ``spec``; return the spec with the layout (stated or inferred from
    the input shape) and a fixed batch size of the model (``batch``) filled in."""
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(proto.graph.output) != 1:
        raise ModelError(f"{path}: expected one image input and one logits output, got {len(inputs)} input(s) "
                         f"and {len(proto.graph.output)} output(s)")
    in_dims = _dims(inputs[0])
    if len(in_dims) == 4:
        spec = spec.with_layout_from(in_dims, source=f"{path} input '{inputs[0].name}'")
    expected = spec.input_shape()
    if len(in_dims) != 4 or any(d is not None and e is not None and d != e for d, e in zip(in_dims[1:], expected[1:])):
        layout = (spec.layout or "nchw").upper()
        raise ModelError(f"{path}: input '{inputs[0].name}' has shape {_show(in_dims)}, but {spec_source} says "
                         f"{_show(['N', *expected[1:]])} ({layout})")
    if in_dims[0] is not None and spec.batch is None:
        spec = spec.replace(batch=in_dims[0])  # a fixed-batch model: calibration and checks batch to fit
    out_dims = _dims(proto.graph.output[0])
    if out_dims and out_dims[-1] is not None and out_dims[-1] != spec.num_classes:
        raise ModelError(f"{path}: output '{proto.graph.output[0].name}' has {out_dims[-1]} classes, but "
                         f"{spec_source} lists {spec.num_classes} labels")
    return spec


def _dims(value_info) -> list[int | None]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in shape.dim]


def _show(dims) -> str:
    return " x ".join("?" if d is None else str(d) for d in dims)
