"""One step per (target, precision): turn the staged FP32 ONNX into the target's model file.

``STEPS[(target, precision)]`` is the only place that knows which function makes which file. Adding a
target is one ``@register(...)`` function here (or in a plugin module) plus one runtime backend that opens
its files (``edgefer.runtime.base.BACKENDS`` / ``SUFFIXES``): the pipeline checks the step's product through
that backend. docs/ARCHITECTURE.md walks through it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ExportError
from ..spec import ModelSpec
from .config import DEFAULT_PLACEMENT, ExportConfig
from .result import TensorRtStep
from .tensorrt import PRECISIONS, EngineOptions  # one PRECISIONS: engine precisions = export precisions

if TYPE_CHECKING:  # numpy and the calibration set stay out of ``edgefer export --help``
    import numpy as np

    from .calibration import CalibrationSet


@dataclass
class StepContext:
    """What a step gets: the staging directory, the FP32 ONNX in it, the spec, the validated config, the
    calibration set (INT8), the check images/labels with the FP32 reference logits on them, the directory the
    export is published as (for printed commands), and ``timings`` to add to."""

    stage: Path
    fp32_onnx: Path
    spec: ModelSpec
    config: ExportConfig  # validated: steps.validate
    calib: CalibrationSet | None
    images: np.ndarray  # uint8 (N, H, W) or (N, H, W, 3)
    labels: np.ndarray | None  # int (N,)
    reference: np.ndarray  # FP32 logits on images
    out_dir: Path
    timings: dict
    classes: tuple = ()  # the check images' class names (matched onto the model's labels by name)
    qat_source: tuple | None = None  # (checkpoint, training data or None) when the INT8 search may try QAT


@dataclass
class StepOutput:
    """The step's model file (in the stage) and its report sections."""

    model: Path
    conversion: dict | None = None
    quantization: dict | None = None
    int8_search: dict | None = None
    tensorrt: TensorRtStep | None = None


@dataclass(frozen=True)
class Step:
    target: str
    precision: str
    run: Callable[[StepContext], StepOutput]
    quantizers: tuple[str, ...] = ()  # INT8: quantizers that apply (edgefer.export.quantizers.REGISTRY names)
    default_quantizer: str | None = None


STEPS: dict[tuple[str, str], Step] = {}


def register(target: str, precision: str, *, quantizers: tuple[str, ...] = (), default_quantizer: str | None = None):
    """Decorator: make ``func(ctx) -> StepOutput`` the step for (``target``, ``precision``)."""

    def decorate(func):
        STEPS[(target, precision)] = Step(target, precision, func, tuple(quantizers), default_quantizer)
        return func

    return decorate


def targets() -> tuple[str, ...]:
    return tuple(dict.fromkeys(t for t, _ in STEPS))


def supported() -> str:
    """One line listing what each target supports (for error messages)."""
    parts = []
    for target in targets():
        flags = []
        for (t, precision), step in STEPS.items():
            if t != target or precision == "fp32":
                continue
            flag = f"--{precision}"
            if step.quantizers:
                flag += f" --quantizer {'|'.join(step.quantizers)}"
                if step.default_quantizer:
                    flag = f"--{precision} [--quantizer {'|'.join(step.quantizers)}]"
            flags.append(flag)
        parts.append(f"--target {target}" + (f" [{' | '.join(flags)}]" if flags else ""))
    return "supported: " + ", ".join(parts) + "; --int8 needs --data PATH or --calib BUNDLE"


def validate(config: ExportConfig) -> ExportConfig:
    """``config`` checked against the registry and its own fields (``ExportConfig.validate``), with the INT8
    quantizer resolved (``quant.quantizer`` set to the step's default when unset) and the TensorRT engine options
    filled in; or one ExportError naming what is supported."""
    if config.target not in targets():
        raise ExportError(f"unknown target {config.target!r}; {supported()}")
    if config.precision not in PRECISIONS:
        raise ExportError(f"unknown precision {config.precision!r} (use fp32, --fp16 or --int8); {supported()}")
    if (config.target, config.precision) not in STEPS:
        raise ExportError(f"--target {config.target} does not support {config.precision}; {supported()}")
    config = config.validate()
    if config.precision != "int8":
        given = {"--quantizer": config.quant.quantizer is not None, "--keep-fp": bool(config.quant.keep_fp),
                 "--placement": config.quant.placement != DEFAULT_PLACEMENT}
        flag = next((f for f, on in given.items() if on), None)
        if flag is not None:
            raise ExportError(f"{flag} only applies to --int8; {supported()}")
        if config.search.enabled:
            raise ExportError(f"--max-drop only applies to --int8 (got {config.precision}); {supported()}")
    else:
        step = STEPS[(config.target, config.precision)]
        quantizer = config.quant.quantizer or step.default_quantizer
        if quantizer is None:
            raise ExportError(
                f"--target {config.target} --int8 needs a quantizer: add --quantizer "
                f"{' or '.join(step.quantizers)}; {supported()}")
        if quantizer not in step.quantizers:
            raise ExportError(f"--quantizer {quantizer!r} does not apply to --target {config.target} "
                              f"(use {', '.join(step.quantizers)}); {supported()}")
        if config.quant.placement != DEFAULT_PLACEMENT and quantizer != "ort":
            raise ExportError(f"--placement only applies to the Q/DQ graph (--target tensorrt, or --quantizer ort); "
                              f"--quantizer {quantizer} places its own; {supported()}")
        config = config.replace(quant=dataclasses.replace(config.quant, quantizer=quantizer))
    if config.target == "tensorrt":
        engine = dataclasses.replace(config.engine or EngineOptions(), precision=config.precision).validate()
        config = config.replace(engine=engine)
    return config


def check_inputs(config: ExportConfig, data, calib) -> None:
    """Refuse a config whose inputs are missing (calibration images for INT8, labels for the search)."""
    if config.precision != "int8" and calib is not None:
        raise ExportError(f"--calib only applies to --int8; {supported()}")
    if config.precision == "int8" and data is None and calib is None:
        raise ExportError(f"--int8 needs calibration images: --data PATH (FER2013 CSV or image folders) or "
                          f"--calib BUNDLE (from edgefer calibrate); {supported()}")
    if config.search.enabled and data is None:
        raise ExportError("--max-drop needs labelled validation images: add --data PATH (the validation split "
                          "carved from its training data is what the macro-F1 drop is measured on)")


# ---- the built-in steps ------------------------------------------------------------------------------------


@register("onnx", "fp32")
def onnx_fp32(ctx: StepContext) -> StepOutput:
    return StepOutput(ctx.fp32_onnx)


@register("onnx", "fp16")
def onnx_fp16(ctx: StepContext) -> StepOutput:
    return _fp16_onnx(ctx)


@register("onnx", "int8", quantizers=("ort-cpu", "ort"), default_quantizer="ort-cpu")
def onnx_int8(ctx: StepContext) -> StepOutput:
    """ort-cpu: ONNX Runtime's CPU INT8 graph (edgefer.export.ort_int8); ort: the TensorRT-style Q/DQ graph."""
    return _int8(ctx, "model.int8.onnx", quantize_bias=True)


@register("openvino", "fp32")
def openvino_fp32(ctx: StepContext) -> StepOutput:
    from .openvino import to_ir

    produced = ctx.stage / "model.xml"
    return StepOutput(produced, conversion=to_ir(ctx.fp32_onnx, produced, ctx.spec, fp16=False))


@register("openvino", "fp16")
def openvino_fp16(ctx: StepContext) -> StepOutput:
    from .openvino import to_ir

    produced = ctx.stage / "model.fp16.xml"
    return StepOutput(produced, conversion=to_ir(ctx.fp32_onnx, produced, ctx.spec, fp16=True))


@register("openvino", "int8", quantizers=("nncf",), default_quantizer="nncf")
def openvino_int8(ctx: StepContext) -> StepOutput:
    return _int8(ctx, "model.int8.xml")


@register("tensorrt", "fp32")
def tensorrt_fp32(ctx: StepContext) -> StepOutput:
    return _with_engine(ctx, StepOutput(ctx.fp32_onnx))


@register("tensorrt", "fp16")
def tensorrt_fp16(ctx: StepContext) -> StepOutput:
    return _with_engine(ctx, _fp16_onnx(ctx))


@register("tensorrt", "int8", quantizers=("ort",), default_quantizer="ort")
def tensorrt_int8(ctx: StepContext) -> StepOutput:
    return _with_engine(ctx, _int8(ctx, "model.int8.qdq.onnx"))


def _fp16_onnx(ctx: StepContext) -> StepOutput:
    from .qdq import to_fp16

    produced = ctx.stage / "model.fp16.onnx"
    return StepOutput(produced, conversion=to_fp16(ctx.fp32_onnx, produced, ctx.spec))


def failed_search_report(out_dir: Path) -> Path:
    """Where a failed INT8 search's report goes: ``<out>.int8_search.json`` BESIDE the output directory, never
    inside it (nothing is published on failure, and a previous export there must not seem to include it)."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".int8_search.json")


def _int8(ctx: StepContext, name: str, quantize_bias: bool = False) -> StepOutput:
    """One quantization with the user's recipe, or the accuracy-bounded search (``--max-drop``)."""
    config, produced = ctx.config, ctx.stage / name
    if config.search.enabled:
        from . import search

        inputs = search.SearchInputs(ctx.fp32_onnx, ctx.spec, ctx.calib, ctx.images, ctx.labels, ctx.reference,
                                     ctx.classes or None, qat_source=ctx.qat_source)
        failure_report = failed_search_report(ctx.out_dir)
        report = search.run(inputs, produced, config.search, config.quant, target=config.target,
                            quantize_bias=quantize_bias, report_path=failure_report)
        failure_report.unlink(missing_ok=True)  # a failed earlier search's report no longer describes this output
        chosen = report["attempts"][report["chosen"]]
        quantization = {"int8_search_attempt": chosen["index"], **chosen["recipe"], "excluded_nodes": chosen["excluded"]}
        return StepOutput(produced, quantization=quantization, int8_search=report)
    from .quantizers import create

    quantizer = create(config.quant.quantizer, ctx.fp32_onnx, ctx.calib, ctx.spec, config.quant,
                       quantize_bias=quantize_bias, trt_cache=config.target == "tensorrt")
    return StepOutput(produced, quantization=quantizer.quantize(quantizer.default_recipe(), [], produced))


def _with_engine(ctx: StepContext, output: StepOutput) -> StepOutput:
    """Build the TensorRT engine where TensorRT is installed; otherwise describe the build for the device.
    Printed commands name the files where the export is published, as the user gave that directory."""
    from . import tensorrt, trt_cache
    from .onnx import io_names

    onnx_path = output.model
    engine = tensorrt.engine_path_for(onnx_path)
    options = tensorrt.fit_to_graph(ctx.config.engine, onnx_path)  # a user's ONNX may have a fixed batch size
    shown_onnx, shown_engine = ctx.out_dir / onnx_path.name, ctx.out_dir / engine.name
    input_name = io_names(onnx_path)[0]
    step = TensorRtStep(
        onnx=onnx_path.name,
        build_engine_command=tensorrt.build_engine_command(str(shown_onnx), str(shown_engine), options),
        trtexec_command={f"tensorrt_{major}": tensorrt.trtexec_command(str(shown_onnx), str(shown_engine), ctx.spec,
                                                                        options, input_name, major)
                         for major in (10, 11)})
    cache = trt_cache.cache_path_for(onnx_path)
    if cache.is_file():  # TensorRT 10.x implicit INT8 (DLA on JetPack 6): the FP32 graph + the calibration cache
        step.implicit_int8 = {"calib_cache": cache.name, **tensorrt.implicit_int8_commands(
            str(ctx.out_dir / ctx.fp32_onnx.name), str(ctx.out_dir / cache.name),
            str(ctx.out_dir / "model.int8.implicit.engine"), ctx.spec, options, input_name)}
    available = importlib.util.find_spec("tensorrt") is not None
    build = available if ctx.config.build_engine is None else ctx.config.build_engine
    if not build:
        step.reason = "tensorrt is not installed here" if not available else "build disabled"
    else:
        clock = time.perf_counter()
        step.built, step.engine = True, engine.name
        step.sidecar = tensorrt.build_engine(onnx_path, engine, options, spec=ctx.spec)
        ctx.timings["engine_seconds"] = round(time.perf_counter() - clock, 3)
    output.tensorrt = step
    return output


# ---- deployment bundles: the logic lives in edgefer.export.deepstream and edgefer.export.triton -------------


@register("deepstream", "int8", quantizers=("ort",), default_quantizer="ort")  # applied last: listed fp32, fp16, int8
@register("deepstream", "fp16")
@register("deepstream", "fp32")
def deepstream_bundle(ctx: StepContext) -> StepOutput:
    """Probability ONNX + Gst-nvinfer secondary-classifier config, labels, INT8 calibration cache, README."""
    from .deepstream import run_step

    model, report = run_step(ctx)
    return StepOutput(model, conversion=report)


@register("triton", "fp16")
@register("triton", "fp32")
def triton_repository(ctx: StepContext) -> StepOutput:
    """Triton model repository: onnxruntime, openvino and tensorrt_plan models (the plan, or its build script)."""
    from .triton import run_step

    model, report, step = run_step(ctx)
    return StepOutput(model, conversion=report, tensorrt=step)
