"""What a model artefact is, like ``polygraphy inspect model`` (``edgefer info MODEL`` prints it).

ONNX (``.onnx``): inputs and outputs (names, shapes, dtypes), layout, the embedded spec (or a sidecar), opset,
precision (fp32 / fp16 / int8 with the Q/DQ node count), node count by op type. OpenVINO IR (``.xml``): the same
read from the IR's XML (no OpenVINO needed), precision from element types and the FakeQuantize count. TensorRT
(``.engine``/``.plan``): the sidecar spec, and the bindings when ``tensorrt`` is installed. An edgefer checkpoint
(run directory, ``model.json`` or ``best.safetensors``): architecture, spec, metrics, training settings. Every
file gets its size and sha256. onnx and tensorrt are imported only for their own kind of file.

``inspect_artefact(path)`` -> ``ArtefactInfo`` (``to_dict()`` is the ``--json`` object); ``format_info`` its text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UsageError

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
QOPERATOR_OPS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd", "QLinearMul",
                 "DynamicQuantizeLinear")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


@dataclass(frozen=True)
class FileInfo:
    path: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class TensorDesc:
    """A model input or output: its name, shape (an int, or a name / "?" for a dynamic dimension) and dtype."""

    name: str
    shape: list
    dtype: str


@dataclass
class ArtefactInfo:
    """Everything ``edgefer info`` reports about one artefact (``--json`` prints it as is)."""

    path: str
    kind: str  # onnx, openvino, tensorrt or checkpoint
    files: list[FileInfo]
    inputs: list[TensorDesc] = field(default_factory=list)
    outputs: list[TensorDesc] = field(default_factory=list)
    layout: str | None = None  # nchw, nhwc, or None when the input shape does not tell
    spec: dict | None = None
    spec_source: str | None = None  # where the spec was read from
    precision: str | None = None  # fp32, fp16, int8 (quantized activations and weights), int8-weights
    quantization: str | None = None  # how int8 is expressed: Q/DQ, QOperator (ONNX), FakeQuantize (OpenVINO)
    quantize_nodes: int = 0  # QuantizeLinear + DequantizeLinear (ONNX) or FakeQuantize (OpenVINO) nodes
    opset: dict[str, int] = field(default_factory=dict)
    node_count: int = 0
    op_counts: dict[str, int] = field(default_factory=dict)  # the most frequent op types, most frequent first
    checkpoint: dict | None = None  # arch, epoch, metrics, training settings of an edgefer checkpoint
    # OpenVINO IR: runtime, device and the float precision edgefer's runtime defaults execute it in on this machine
    # (read back from the compiled model; an int8 IR's float layers)
    executes: dict | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def inspect_artefact(path: Path, top: int = 10, sidecar: Path | None = None) -> ArtefactInfo:
    """An ``ArtefactInfo`` for ``path``; UsageError for a file this command does not know."""

    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir() and not (path / "model.json").is_file():
        models = sorted(p.name for p in path.iterdir() if p.suffix.lower() in (".onnx", ".xml", *ENGINE_SUFFIXES))
        hint = f"; give one of its model files: {', '.join(models)}" if models else ""
        raise UsageError(f"{path}: a directory without model.json, so not an edgefer checkpoint{hint}")
    if path.is_dir() or suffix == ".safetensors" or path.name == "model.json":
        return _checkpoint(path)
    if suffix == ".onnx":
        return _onnx(path, top, sidecar)
    if suffix == ".xml":
        return _openvino(path, top, sidecar)
    if suffix in ENGINE_SUFFIXES:
        return _engine(path, sidecar)
    if suffix == ".bin":
        raise UsageError(f"{path}: an OpenVINO weights file; give its .xml")
    raise UsageError(f"{path}: cannot tell what this is from the suffix {suffix!r} (expected .onnx, .xml, "
                     f"{', '.join(ENGINE_SUFFIXES)}, a checkpoint directory, model.json or .safetensors)")


# --- common pieces ------------------------------------------------------------------------------------------


def _file(path: Path) -> FileInfo:
    from .fileio import sha256_file

    return FileInfo(str(path), path.stat().st_size, sha256_file(path))


def _layout(inputs: list[TensorDesc], spec: dict | None) -> str | None:
    """The spec's layout when it states one, else nchw / nhwc when the 4-d input shape tells (channels 1 or 3
    in exactly one of the two places)."""
    if spec and spec.get("layout"):
        return str(spec["layout"])
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        return None
    shape = inputs[0].shape
    first, last = shape[1] in (1, 3), shape[3] in (1, 3)
    return "nchw" if first and not last else "nhwc" if last and not first else None


def _spec(embedded: str | None, where: str, model: Path, sidecar: Path | None, info: ArtefactInfo) -> None:
    """Fill ``info.spec``/``spec_source`` from the embedded JSON, else from the sidecar; a spec that does not
    parse is a note, not an error (showing broken artefacts is what this command is for)."""
    from .errors import ModelError
    from .spec import ModelSpec, sidecar_path

    text, source = embedded, where
    if text is None:
        candidate = Path(sidecar) if sidecar else sidecar_path(model)
        if not candidate.is_file():
            info.notes.append(f"no preprocessing spec: nothing embedded and no sidecar at {candidate}")
            return
        source = f"sidecar {candidate}"
        info.files.append(_file(candidate))
        try:
            text = candidate.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            info.notes.append(f"spec not valid: {source}: not UTF-8 text (byte {exc.start}: {exc.reason})")
            return
    try:
        spec = ModelSpec.from_json(text, source=source)
    except ModelError as exc:
        info.notes.append(f"spec not valid: {exc}")
        return
    info.spec, info.spec_source = spec.to_dict(), source


def _top(counts: Counter, top: int) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: top or None])


# --- ONNX ---------------------------------------------------------------------------------------------------


def _text(value) -> str:
    """A name from an ONNX proto as text: protobuf hands over bytes when a damaged file's string is not UTF-8."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


def _onnx(path: Path, top: int, sidecar: Path | None) -> ArtefactInfo:
    from .errors import ModelError, require
    from .spec import METADATA_KEY

    onnx = require("onnx", "onnx", "reading ONNX models")
    if path.is_file() and path.stat().st_size == 0:
        raise ModelError(f"{path}: not an ONNX model (the file is empty)")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a file that is not ONNX
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    if not proto.ir_version or not proto.HasField("graph"):  # bytes protobuf happens to parse as an empty model
        raise ModelError(f"{path}: not an ONNX model (no IR version or graph)")
    info = ArtefactInfo(str(path), "onnx", [_file(path)])
    graph = proto.graph
    initializers = {init.name for init in graph.initializer}

    def desc(value) -> TensorDesc:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (_text(d.dim_param) or "?") for d in tensor.shape.dim]
        if not tensor.elem_type:
            return TensorDesc(_text(value.name), dims, "?")
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        except (KeyError, ValueError, TypeError):
            raise ModelError(f"{path}: not a valid ONNX model: tensor {_text(value.name)!r} has an unknown element "
                             f"type {tensor.elem_type}") from None
        return TensorDesc(_text(value.name), dims, dtype)

    info.inputs = [desc(v) for v in graph.input if v.name not in initializers]
    info.outputs = [desc(v) for v in graph.output]
    info.opset = {(o.domain or "ai.onnx"): o.version for o in proto.opset_import}
    ops = Counter(_text(node.op_type) for node in graph.node)
    for function in proto.functions:  # dynamo exports keep parts of the graph in local functions
        ops.update(_text(node.op_type) for node in function.node)
    info.node_count, info.op_counts = sum(ops.values()), _top(ops, top)
    embedded = {p.key: p.value for p in proto.metadata_props}.get(METADATA_KEY)
    _spec(embedded, f"embedded (ONNX metadata_props '{METADATA_KEY}')", path, sidecar, info)
    info.layout = _layout(info.inputs, info.spec)
    qdq = sum(ops[op] for op in QDQ_OPS)
    float_types = Counter(onnx.helper.tensor_dtype_to_np_dtype(i.data_type).name for i in graph.initializer
                          if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16))
    if qdq:
        info.precision, info.quantization, info.quantize_nodes = "int8", "Q/DQ", qdq
    elif any(ops[op] for op in QOPERATOR_OPS):
        info.precision, info.quantization = "int8", "QOperator"
    elif float_types["float16"] > float_types["float32"]:
        info.precision = "fp16"
    else:
        info.precision = "fp32"
    if any(i.data_location == onnx.TensorProto.EXTERNAL for i in graph.initializer):
        info.notes.append("weights in external data files beside the model (not hashed here)")
    return info


# --- OpenVINO IR --------------------------------------------------------------------------------------------

_OV_TYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "i64": "int64", "i32": "int32",
             "i8": "int8", "u8": "uint8", "boolean": "bool"}


def _openvino(path: Path, top: int, sidecar: Path | None) -> ArtefactInfo:
    import xml.etree.ElementTree as ET

    from .errors import ModelError
    from .spec import METADATA_KEY

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ModelError(f"{path}: not a readable OpenVINO IR ({exc})") from None
    if root.tag != "net":
        raise ModelError(f"{path}: not an OpenVINO IR (root element <{root.tag}>, expected <net>)")
    info = ArtefactInfo(str(path), "openvino", [_file(path)])
    weights = path.with_suffix(".bin")
    if weights.is_file():
        info.files.append(_file(weights))
    else:
        info.notes.append(f"weights file {weights.name} is missing")
    layers = root.findall("./layers/layer")
    by_id = {layer.get("id"): layer for layer in layers}
    ops = Counter(layer.get("type") or "?" for layer in layers)  # a layer without a type: "?", not None
    info.node_count, info.op_counts = len(layers), _top(ops, top)
    info.opset = dict(sorted(Counter(layer.get("version", "?") for layer in layers).items()))

    def broken(layer, why: str):
        return ModelError(f"{path}: not a valid OpenVINO IR: {layer.get('type')} layer "
                          f"{layer.get('name') or layer.get('id')!r} {why}")

    def dims(layer, port) -> list:
        shape = []
        for d in port.findall("dim"):
            text = (d.text or "").strip()
            try:
                shape.append(int(text) if int(text) >= 0 else "?")
            except ValueError:
                raise broken(layer, f"has <dim>{text}</dim>, not an integer") from None
        return shape

    def port_of(layer, where: str):
        port = layer.find(f"./{where}/port")
        if port is None:
            raise broken(layer, f"has no {where} port")
        return port

    for layer in layers:
        if layer.get("type") == "Parameter":
            port = port_of(layer, "output")
            data = layer.find("data")
            name = (port.get("names") or layer.get("name") or "?").split(",")[0]
            etype = data.get("element_type") if data is not None else "?"
            info.inputs.append(TensorDesc(name, dims(layer, port), _OV_TYPES.get(etype, etype)))
    sources = {(e.get("to-layer"), e.get("to-port")): (e.get("from-layer"), e.get("from-port"))
               for e in root.findall("./edges/edge")}
    for layer in layers:
        if layer.get("type") == "Result":
            port = port_of(layer, "input")
            from_layer, from_port = sources.get((layer.get("id"), port.get("id")), (None, None))
            source = by_id.get(from_layer)
            source_port = source.find(f"./output/port[@id='{from_port}']") if source is not None else None
            names = layer.get("output_names") or (source_port.get("names") if source_port is not None else None)
            precision = (port.get("precision") or "?").lower()
            info.outputs.append(TensorDesc((names or layer.get("name") or "?").split(",")[0], dims(layer, port),
                                           _OV_TYPES.get(precision.replace("fp", "f"), precision)))
    rt = root.find(f"./rt_info/{METADATA_KEY}")
    embedded = rt.get("value") if rt is not None else None
    _spec(embedded, f"embedded (OpenVINO rt_info '{METADATA_KEY}')", path, sidecar, info)
    info.layout = _layout(info.inputs, info.spec)
    consts = Counter((layer.find("data").get("element_type") if layer.find("data") is not None else "?")
                     for layer in layers if layer.get("type") == "Const")
    info.quantize_nodes = ops["FakeQuantize"]
    if info.quantize_nodes:
        info.precision, info.quantization = "int8", "FakeQuantize"
    elif consts["i8"] + consts["u8"] + consts["i4"] + consts["u4"]:
        info.precision = "int8-weights"  # compressed weights, float activations
    elif consts["f16"] > consts["f32"]:
        info.precision = "fp16"  # weights stored in f16
    else:
        info.precision = "fp32"
    _executes(path, info)
    return info


def _executes(path: Path, info: ArtefactInfo) -> None:
    """What OpenVINO executes the IR in on this machine with edgefer's runtime defaults for the spec's precision
    (``edgefer.runtime.openvino.executes``: compiled once and read back: an fp16 IR may compute in f32, an int8
    IR's float layers in bf16)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        info.notes.append("install openvino to see the precision it executes in here (pip install 'edgefer[openvino]')")
        return
    from .errors import ModelError
    from .runtime.openvino import executes

    try:
        info.executes = executes(path, str((info.spec or {}).get("precision", "fp32")))
    except ModelError as exc:
        info.notes.append(f"executed precision unknown: {exc}")


# --- TensorRT engine ----------------------------------------------------------------------------------------


def _engine(path: Path, sidecar: Path | None) -> ArtefactInfo:
    info = ArtefactInfo(str(path), "tensorrt", [_file(path)])
    _spec(None, "", path, sidecar, info)
    if info.spec:
        info.precision = info.spec.get("precision")
    try:
        import tensorrt as trt
    except ImportError:
        info.notes.append("install tensorrt to list bindings (pip install 'edgefer[tensorrt]' on the GPU host)")
        return info
    try:
        runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise RuntimeError("TensorRT could not deserialise it (another TensorRT version or GPU?)")
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            desc = TensorDesc(name, [d if d >= 0 else "?" for d in engine.get_tensor_shape(name)],
                              str(engine.get_tensor_dtype(name)).split(".")[-1].lower())
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (info.inputs if is_input else info.outputs).append(desc)
        info.layout = _layout(info.inputs, info.spec)
    except Exception as exc:  # noqa: BLE001 - the bindings are extra information; the rest stays useful
        info.notes.append(f"bindings not listed: {type(exc).__name__}: {exc}")
    return info


# --- edgefer checkpoint -------------------------------------------------------------------------------------

_TRAINING_SETTINGS = ("data", "img_size", "loss", "class_weights", "epochs", "max_steps", "batch_size", "lr",
                      "pretrained", "seed")


def _checkpoint(path: Path) -> ArtefactInfo:
    from .models import checkpoint_paths, read_checkpoint_meta

    weights, meta_path = checkpoint_paths(path)
    meta = read_checkpoint_meta(path)
    info = ArtefactInfo(str(path), "checkpoint", [_file(weights), _file(meta_path)])
    spec = meta.get("spec")
    if isinstance(spec, dict):
        info.spec, info.spec_source = spec, f"checkpoint {meta_path}"
        info.precision = spec.get("precision", "fp32")
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    info.checkpoint = {
        "arch": meta.get("arch"),
        "epoch": meta.get("epoch"), "step": meta.get("step"), "stop_reason": meta.get("stop_reason"),
        "synthetic_data": bool(meta.get("synthetic")),
        "metrics": {split: {k: m[k] for k in ("accuracy", "macro_f1", "n") if k in m}
                    for split, m in metrics.items() if isinstance(m, dict)},
        "training": {k: config[k] for k in _TRAINING_SETTINGS if k in config},
    }
    if meta.get("weights_sha256") and meta["weights_sha256"] != info.files[0].sha256:
        info.notes.append(f"{weights.name} does not match the sha256 recorded in {meta_path.name}")
    return info


# --- text ---------------------------------------------------------------------------------------------------

_KIND_NAMES = {"onnx": "ONNX model", "openvino": "OpenVINO IR", "tensorrt": "TensorRT engine",
               "checkpoint": "edgefer checkpoint"}


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def format_info(info: ArtefactInfo) -> str:
    lines = [f"{info.path}: {_KIND_NAMES[info.kind]}"]
    for f in info.files:
        lines.append(f"  file      {f.path}  {_size(f.size_bytes)}  sha256 {f.sha256}")
    if info.checkpoint:
        ck = info.checkpoint
        lines.append(f"  arch      {ck['arch']}  (epoch {ck['epoch']}, step {ck['step']}, stopped: {ck['stop_reason']})"
                     + ("  [SYNTHETIC DATA]" if ck["synthetic_data"] else ""))
        for split, m in ck["metrics"].items():
            lines.append(f"  {split:<9} " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                    for k, v in m.items()))
        if ck["training"]:
            lines.append("  training  " + ", ".join(f"{k}={v}" for k, v in ck["training"].items()))
    for title, tensors in (("inputs", info.inputs), ("outputs", info.outputs)):
        if tensors:
            lines.append(f"  {title}")
            lines += [f"    {t.name:<20} {t.dtype:<8} [{', '.join(str(d) for d in t.shape)}]" for t in tensors]
    if info.layout:
        lines.append(f"  layout    {info.layout}")
    if info.precision:
        extra = f" ({info.quantization}" if info.quantization else ""
        extra += f": {info.quantize_nodes} nodes)" if info.quantize_nodes else (")" if extra else "")
        lines.append(f"  precision {info.precision}{extra}")
    if info.executes:
        e = info.executes
        what = f"{e['precision']} float layers" if info.precision == "int8" else f"{e['precision']} compute"
        lines.append(f"  executes  {what} on {e['device']} here (read back from {e['runtime']}'s compiled model, "
                     "edgefer runtime defaults)")
    if info.opset:
        lines.append("  opset     " + ", ".join(f"{k} {v}" for k, v in info.opset.items()))
    if info.spec:
        s = info.spec
        lines.append(f"  spec      from {info.spec_source}")
        lines.append(f"            arch {s.get('arch') or '?'}, input {s.get('input_size')} px, {s.get('channels')} "
                     f"channel(s) {s.get('color_order')}, mean {s.get('mean')}, std {s.get('std')}")
        lines.append(f"            labels {', '.join(s.get('labels', []))}")
        output = s.get("output", "auto")
        lines.append("            output " + ("not declared: detected from the model's first outputs when it runs"
                                             if output == "auto" else f"{output} (declared)"))
    if info.node_count:
        lines.append(f"  nodes     {info.node_count}: " + ", ".join(f"{k} {v}" for k, v in info.op_counts.items())
                     + (", ..." if sum(info.op_counts.values()) < info.node_count else ""))
    lines += [f"  note      {note}" for note in info.notes]
    return "\n".join(lines)
