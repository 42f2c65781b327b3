"""Triton Inference Server model repository: the classifier behind the ``onnxruntime``, ``openvino`` and
``tensorrt`` backends, one model directory each.

``write_repository`` writes, next to the staged FP32 ONNX::

    model_repository/
      edgefer_onnxruntime/config.pbtxt, labels.txt, 1/model.onnx         backend "onnxruntime" (KIND_AUTO)
      edgefer_openvino/config.pbtxt, labels.txt, 1/model.xml, 1/model.bin backend "openvino" (KIND_CPU)
      edgefer_tensorrt/config.pbtxt, labels.txt, 1/model.plan            platform "tensorrt_plan" (KIND_GPU),
                                                                         only when the engine was built here
    tensorrt_pending/edgefer_tensorrt/config.pbtxt, labels.txt           otherwise: the engine is built on the
    build_tensorrt_plan.sh                                               device by this script, then moved in
    README.md

Every ``config.pbtxt`` has ``max_batch_size`` (the ``--batch`` maximum; 0 with the batch dimension in ``dims``
for a fixed-batch graph), ``dynamic_batching`` (batched models), one ``instance_group``, the output's
``label_filename`` (Triton's classification extension: ``labels.txt``, one label per line in output order) and
the edgefer spec as JSON under ``parameters { key: "edgefer.spec" }`` (so a client knows the preprocessing). A
model directory without its model file would stop Triton from starting (``--exit-on-error``), hence
``tensorrt_pending/``.

Fields checked against Triton's model configuration documentation
(https://github.com/triton-inference-server/server/blob/main/docs/user_guide/model_configuration.md: name,
platform/backend, max_batch_size, input/output with data_type, format, dims, label_filename, dynamic_batching
with max_queue_delay_microseconds, instance_group with count and kind, parameters), the classification
extension (https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/protocol/extension_classification.html),
the OpenVINO backend's README (backend "openvino", model.xml + model.bin, complete config required) and the
ModelConfig protobuf itself: ``validate`` parses each file with ``tritonclient``'s ``model_config_pb2`` and
protobuf's ``text_format`` when tritonclient is installed (``pip install 'edgefer[triton]'``).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
from pathlib import Path

from ..errors import ExportError
from ..spec import METADATA_KEY, ModelSpec

REPOSITORY = "model_repository"
PENDING = "tensorrt_pending"
BUILD_SCRIPT = "build_tensorrt_plan.sh"
LABELS_FILE = "labels.txt"
README_FILE = "README.md"
NAME = "edgefer"
VERSION = "1"
QUEUE_DELAY_US = 1000  # dynamic batcher: wait at most 1 ms for more requests to batch
BACKENDS = {  # model dir suffix -> (config lines naming the backend, model file(s), instance kind)
    "onnxruntime": ('backend: "onnxruntime"', ("model.onnx",), "KIND_AUTO"),
    "openvino": ('backend: "openvino"', ("model.xml", "model.bin"), "KIND_CPU"),
    "tensorrt": ('platform: "tensorrt_plan"', ("model.plan",), "KIND_GPU"),
}
DATA_TYPES = {"float32": "TYPE_FP32"}


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def config_pbtxt(name: str, backend: str, spec: ModelSpec, input_name: str, output_name: str,
                 max_batch_size: int, *, instances: int = 1) -> str:
    """One model's ``config.pbtxt`` (protobuf text format of Triton's ``ModelConfig``)."""
    header, _, kind = BACKENDS[backend]
    size, channels = spec.input_size, spec.channels
    layout = spec.layout or "nchw"
    sample = [channels, size, size] if layout == "nchw" else [size, size, channels]
    batched = spec.batch is None
    in_dims = sample if batched else [spec.batch, *sample]
    out_dims = [spec.num_classes] if batched else [spec.batch, spec.num_classes]
    fmt = f"\n    format: FORMAT_{layout.upper()}" if batched else ""  # format: 3 dims (no batch) only

    def dims(values):
        return "[ " + ", ".join(str(v) for v in values) + " ]"

    lines = [
        f"name: {_quote(name)}",
        header,
        f"max_batch_size: {max_batch_size if batched else 0}",
        "input [",
        "  {",
        f"    name: {_quote(input_name)}",
        f"    data_type: TYPE_FP32{fmt}",
        f"    dims: {dims(in_dims)}",
        "  }",
        "]",
        "output [",
        "  {",
        f"    name: {_quote(output_name)}",
        "    data_type: TYPE_FP32",
        f"    dims: {dims(out_dims)}",
        f"    label_filename: {_quote(LABELS_FILE)}",
        "  }",
        "]",
    ]
    if batched:
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}", "}"]
    lines += [
        "instance_group [",
        "  {",
        f"    count: {instances}",
        f"    kind: {kind}",
        "  }",
        "]",
        "parameters {",
        f"  key: {_quote(METADATA_KEY)}",
        f"  value: {{ string_value: {_quote(spec.to_json())} }}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def labels_text(labels) -> str:
    """Triton's labels file: one label per line, in the order of the output."""
    bad = [label for label in labels if "\n" in label or "\r" in label]
    if bad:
        raise ExportError(f"--target triton: label(s) {bad!r} contain a line break; Triton's labels file has one "
                          "label per line")
    return "\n".join(labels) + "\n"


def schema():
    """Triton's ``ModelConfig`` message class from tritonclient, or None when tritonclient is not installed.

    The generated module is loaded from its file: ``import tritonclient.grpc`` would import grpcio, which the
    schema does not need (``pip install tritonclient`` without the ``[grpc]`` extra has the module)."""
    found = importlib.util.find_spec("tritonclient")
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        return None
    import sys

    name = "_edgefer_triton_model_config_pb2"
    module = sys.modules.get(name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
        sys.modules[name] = module
    return module.ModelConfig


def validate(text: str, source: str = "config.pbtxt"):
    """Parse ``text`` with Triton's ModelConfig schema; the parsed message, or None without tritonclient."""
    model_config = schema()
    if model_config is None:
        return None
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, model_config())
    except text_format.ParseError as exc:
        raise ExportError(f"{source}: not a valid Triton model configuration: {exc}") from None


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # same file system (the stage): no second copy of the weights
    except OSError:
        shutil.copyfile(source, target)


def write_repository(stage: Path, fp32_onnx: Path, spec: ModelSpec, precision: str, *, engine_options=None,
                     build_engine: bool | None = None, out_dir: Path | None = None, name: str = NAME,
                     instances: int = 1) -> dict:
    """Write the model repository into ``stage`` (module docstring); return the report (``report["model"]``:
    the OpenVINO IR at the top of the stage, the file the export's own check runs; the repository holds hard
    links to it and to the ONNX). ``precision``: fp32, or fp16 (FP16 ONNX with FP32
    inputs/outputs, FP16-compressed OpenVINO IR, FP16 TensorRT engine)."""
    from . import tensorrt
    from .onnx import io_names
    from .openvino import to_ir
    from .result import TensorRtStep

    if precision not in ("fp32", "fp16"):
        raise ExportError(f"--target triton: precision {precision!r} is not supported (fp32 or --fp16)")
    labels = labels_text(spec.labels)
    shown = Path(out_dir) if out_dir is not None else stage
    report: dict = {"repository": REPOSITORY, "models": {}}
    source = fp32_onnx
    conversion: dict = {}
    if precision == "fp16":
        from .qdq import to_fp16

        source = stage / "model.fp16.onnx"
        conversion["onnx_fp16"] = to_fp16(fp32_onnx, source, spec)
    input_name, output_name = io_names(source)
    options = engine_options if engine_options is not None else tensorrt.EngineOptions(precision=precision)
    options = tensorrt.fit_to_graph(options, source)
    max_batch = options.max_batch

    def model_dir(backend: str, root: str = REPOSITORY) -> Path:
        folder = stage / root / f"{name}_{backend}"
        text = config_pbtxt(folder.name, backend, spec, input_name, output_name, max_batch, instances=instances)
        parsed = validate(text, str(folder / "config.pbtxt"))
        (folder / VERSION).mkdir(parents=True, exist_ok=True)
        (folder / "config.pbtxt").write_text(text, encoding="utf-8")
        (folder / LABELS_FILE).write_text(labels, encoding="utf-8")
        report["models"][folder.name] = {"backend": backend, "dir": folder.relative_to(stage).as_posix(),
                                         "schema_checked": parsed is not None}
        return folder

    onnx_dir = model_dir("onnxruntime")
    _link_or_copy(source, onnx_dir / VERSION / "model.onnx")
    ov_dir = model_dir("openvino")
    ir = stage / ("model.fp16.xml" if precision == "fp16" else "model.xml")  # at the top, as --target openvino
    conversion["openvino"] = to_ir(fp32_onnx, ir, spec, fp16=precision == "fp16")
    _link_or_copy(ir, ov_dir / VERSION / "model.xml")
    _link_or_copy(ir.with_suffix(".bin"), ov_dir / VERSION / "model.bin")
    report["conversion"] = conversion

    available = importlib.util.find_spec("tensorrt") is not None
    build = available if build_engine is None else build_engine
    pending_dir = stage / PENDING / f"{name}_tensorrt"
    plan_shown = shown / PENDING / pending_dir.name / VERSION / "model.plan"
    onnx_shown = shown / REPOSITORY / onnx_dir.name / VERSION / "model.onnx"
    step = TensorRtStep(
        onnx=f"{REPOSITORY}/{onnx_dir.name}/{VERSION}/model.onnx",
        build_engine_command=tensorrt.build_engine_command(str(onnx_shown), str(plan_shown), options),
        trtexec_command={f"tensorrt_{major}": tensorrt.trtexec_command(str(onnx_shown), str(plan_shown), spec,
                                                                        options, input_name, major)
                         for major in (10, 11)})
    if build:
        trt_dir = model_dir("tensorrt")
        plan = trt_dir / VERSION / "model.plan"
        step.sidecar = tensorrt.build_engine(source, plan, options, spec=spec)
        step.built, step.engine = True, plan.relative_to(stage).as_posix()
    else:
        step.reason = "tensorrt is not installed here" if not available else "build disabled"
        folder = model_dir("tensorrt", PENDING)
        (stage / BUILD_SCRIPT).write_text(_build_script(folder, onnx_dir, options, spec, input_name), encoding="utf-8")
        (stage / BUILD_SCRIPT).chmod(0o755)
        report["tensorrt_pending"] = {"dir": folder.relative_to(stage).as_posix(), "script": BUILD_SCRIPT}
    (stage / README_FILE).write_text(_readme(report, precision, max_batch, step, spec, output_name), encoding="utf-8")
    report["model"] = ir
    report["tensorrt"] = step
    return report


def _build_script(pending: Path, onnx_dir: Path, options, spec: ModelSpec, input_name: str) -> str:
    from . import tensorrt

    onnx_rel = f"{REPOSITORY}/{onnx_dir.name}/{VERSION}/model.onnx"
    plan_rel = f"{PENDING}/{pending.name}/{VERSION}/model.plan"
    edgefer_line = tensorrt.build_engine_command(onnx_rel, plan_rel, options)
    trtexec_line = tensorrt.trtexec_command(onnx_rel, plan_rel, spec, options, input_name, 10)
    return f"""#!/bin/sh
# Build the TensorRT plan for Triton's tensorrt backend ON THE DEVICE THAT SERVES IT (a plan only runs on the
# GPU and TensorRT version that built it), then move the model into the repository. Written by edgefer.
set -e
cd "$(dirname "$0")"
if command -v edgefer >/dev/null 2>&1; then
  {edgefer_line} --exist-ok
else
  {trtexec_line}
fi
mv {shlex.quote(f"{PENDING}/{pending.name}")} {shlex.quote(REPOSITORY + "/")}
echo "{REPOSITORY}/{pending.name} is ready"
"""


def _readme(report: dict, precision: str, max_batch: int, step, spec: ModelSpec, output_name: str) -> str:
    rows = "\n".join(f"| `{m}` | {info['backend']} | `{info['dir']}` |" for m, info in report["models"].items())
    pending = "" if step.built else f"""
The TensorRT model waits in `{PENDING}/` (a model directory without its model file would stop Triton from
starting). On the Jetson / GPU host that runs Triton: `sh {BUILD_SCRIPT}` builds `model.plan` with
`edgefer build-engine` (or `trtexec` when edgefer is not installed there) and moves the model into
`{REPOSITORY}/`. The exact command: `{step.build_engine_command}`.
"""
    return f"""# edgefer emotion classifier: Triton model repository

Written by `edgefer export --target triton` ({precision}). Input `float32` {spec.layout or 'nchw'}
{spec.channels}x{spec.input_size}x{spec.input_size}, prepared exactly as `edgefer.preprocess.prepare` does
({spec.color_order}, mean {list(spec.mean)}, std {list(spec.std)}; the spec is in each config's `parameters`, key
`{METADATA_KEY}`); output = {spec.output}, one per label of `labels.txt`.

| model | backend | directory |
|---|---|---|
{rows}

`max_batch_size: {max_batch}` with `dynamic_batching` (requests are batched up to it, waiting at most
{QUEUE_DELAY_US} µs). Start the server with:

    tritonserver --model-repository=$PWD/{REPOSITORY}

Top-3 labels through the classification extension (`classification` parameter, `labels.txt`):
`tritonclient` `InferRequestedOutput("{output_name}", class_count=3)`.
{pending}"""


def run_step(ctx):
    """The export step (``edgefer.export.steps``): ``ctx`` is its ``StepContext``; (model file, conversion
    report, TensorRtStep)."""
    config = ctx.config
    report = write_repository(ctx.stage, ctx.fp32_onnx, ctx.spec, config.precision,
                              engine_options=getattr(config, "engine", None), build_engine=config.build_engine,
                              out_dir=ctx.out_dir)
    model, step = report.pop("model"), report.pop("tensorrt")
    return model, {"triton": report}, step
