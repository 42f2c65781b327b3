"""``edgefer calibrate``, ``edgefer export`` and ``edgefer build-engine``.

Options are validated by ``edgefer.export`` (one ``ExportError`` line listing what is supported, exit 2);
heavy imports happen inside the commands.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import click

from ..bounds import BOUND_KEYS, from_click
from ..errors import ExportError
from ..export.config import CalibOptions, EngineSettings, OnnxOptions, QuantOptions, SearchOptions
from ..export.result import FILE_NAME, ExportResult
from ..export.steps import check_inputs, targets, validate
from ..fileio import check_output
from .options import Number, exist_ok_option, verbosity_options

_PATH = click.Path(path_type=Path)


@contextlib.contextmanager
def _echo_warnings():
    """Print calibration warnings (classes under the floor) as one ``edgefer: warning:`` line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    from ..export.calibration import CalibrationWarning
    from ..export.tensorrt import EngineWarning

    for warning in caught:
        if issubclass(warning.category, (CalibrationWarning, EngineWarning)):
            click.echo(f"edgefer: warning: {warning.message}", err=True)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def _config_options(*groups):
    """Click options generated from the field metadata of the export config dataclasses (``option``, ``help``,
    ``choices`` from the tuples the code validates against); the parameter name is ``<group>__<field>``."""
    from dataclasses import MISSING, fields

    def decorate(func):
        for group in reversed(groups):
            for f in reversed(fields(group)):
                meta = f.metadata
                extra = dict(meta["click"])
                choices = extra.pop("choices", None)
                if choices is not None:
                    extra["type"] = click.Choice(choices)
                bound = from_click(extra)
                if bound is not None:  # finite, an integer where it must be, in range: checked while parsing
                    extra = {k: v for k, v in extra.items() if k not in BOUND_KEYS}
                    extra["type"] = Number(bound)
                default = () if extra.get("multiple") else (None if f.default is MISSING else f.default)
                shown = default not in (None, (), False) and not extra.get("is_flag")
                func = click.option(meta["option"], f"{_GROUPS[group]}__{f.name}", default=default,
                                    show_default=shown, help=meta["help"], **extra)(func)
        return func

    return decorate


_GROUPS = {CalibOptions: "calib", QuantOptions: "quant", OnnxOptions: "onnx", SearchOptions: "search",
           EngineSettings: "engine"}


def _groups(values: dict) -> dict:
    """{group name: {field: value}} from the generated options' values."""
    out: dict = {}
    for key, value in values.items():
        group, _, name = key.partition("__")
        out.setdefault(group, {})[name] = tuple(value) if isinstance(value, list) else value
    return out


def _precision(fp16: bool, int8: bool, fp32: bool = False) -> str:
    if sum((fp16, int8, fp32)) > 1:
        raise ExportError("choose one precision: --fp16 or --int8 (FP32 is the default); "
                          "--fp16 --int8 together is not supported")
    return "int8" if int8 else "fp16" if fp16 else "fp32"


@click.command()
@click.option("--data", required=True, type=_PATH, help="FER2013 CSV or image folders; draws from the train split.")
@click.option("--out", required=True, type=_PATH, help="Bundle directory (calib.npz + manifest.json).")
@_config_options(CalibOptions)
@exist_ok_option
@verbosity_options
def calibrate(data: Path, out: Path, exist_ok: bool, **values):
    """Draw a seeded INT8 calibration set from the training split and save it as a portable bundle.

    The same data and options give byte-identical files; every INT8 export can reuse it with --calib.
    """
    from ..export.calibration import from_data
    from ..fileio import staged_dir

    check_output(out, "dir", exist_ok)
    c = CalibOptions(**_groups(values)["calib"]).validate()
    with _echo_warnings():
        calib = from_data(data, c.size, c.strategy, c.seed, c.floor, val_fraction=c.val_fraction,
                          split_seed=c.split_seed)
    with staged_dir(out) as stage:
        calib.save(stage)
    counts = ", ".join(f"{k} {v}" for k, v in calib.manifest["per_class"].items())
    tag = " SYNTHETIC" if calib.synthetic else ""
    click.echo(f"wrote {out}/calib.npz + manifest.json: {len(calib)}{tag} images ({c.strategy}, seed "
               f"{c.seed}): {counts}")


@click.command()
@click.option("--model", required=True, type=_PATH,
              help="edgefer checkpoint (run dir, model.json or best.safetensors) or any ONNX classifier.")
@click.option("--sidecar", type=_PATH, help="JSON spec for an ONNX model without edgefer metadata "
              "(labels, input_size, channels, mean, std, color_order); default <model>.onnx.json.")
@click.option("--target", required=True, type=click.Choice(targets()), help="Export target.")
@click.option("--fp16", is_flag=True, help="FP16 (TensorRT: FP16 ONNX with FP32 I/O; OpenVINO: FP16 weights).")
@click.option("--int8", is_flag=True, help="INT8 calibrated on --data or --calib.")
@click.option("--out", required=True, type=_PATH, help="Output directory (files + export.json).")
@click.option("--data", type=_PATH, help="FER2013 CSV or image folders: validation images for the checks and "
              "the training split for calibration.")
@click.option("--calib", type=_PATH, help="Reuse a calibration bundle from edgefer calibrate.")
@click.option("--calib-data", type=_PATH, help="Draw the INT8 calibration set from this labelled data (any FER2013 "
              "CSV or image folder, used whole) instead of --data's training split.")
@_config_options(CalibOptions, QuantOptions, OnnxOptions, SearchOptions)
@_config_options(EngineSettings)
@click.option("--build-engine/--no-build-engine", "build", default=None,
              help="Build the TensorRT engine here (default: when tensorrt is installed).")
@exist_ok_option
@verbosity_options
def export(model, sidecar, target, fp16, int8, out, data, calib, calib_data, build, exist_ok, **values):
    """Export to ONNX, OpenVINO or TensorRT-ready graphs, check them, and write export.json.

    \b
    edgefer export --model runs/fer --target tensorrt --int8 --data fer2013.csv --out export/trt-int8
    edgefer export --model runs/fer --target openvino --int8 --calib calib/ --data fer2013.csv --out export/ov
    edgefer export --model my.onnx --sidecar my.json --target onnx --out export/onnx
    edgefer export --model runs/fer --target tensorrt --int8 --max-drop 0.005 --data fer2013.csv --out export/searched
    """
    from ..export.config import ExportConfig

    precision = _precision(fp16, int8)
    groups = _groups(values)
    engine = EngineSettings(**groups.pop("engine")).options(precision) \
        if target in ("tensorrt", "deepstream", "triton") else None  # --batch: nvinfer batch-size, Triton max_batch_size
    config = ExportConfig(target, precision, onnx=OnnxOptions(**groups["onnx"]), calib=CalibOptions(**groups["calib"]),
                          quant=QuantOptions(**groups["quant"]), search=SearchOptions(**groups["search"]),
                          engine=engine, build_engine=build)
    config = validate(config)
    from ..export.calibration import refuse_both, resolve

    refuse_both(calib, calib_data)
    check_inputs(config, data, calib if calib_data is None else calib_data)
    check_output(out, "dir", exist_ok)
    from ..export.pipeline import export as run_export

    with _echo_warnings():
        if calib_data is not None:  # drawn here; the pipeline resolves --calib and --data's draw itself
            calib = resolve(config.calib, labelled=calib_data).calib
        result = run_export(model, config, out, data=data, calib=calib, sidecar=sidecar)
    click.echo(export_summary(result, out))


def export_summary(result: ExportResult, out: str | Path) -> str:
    """The lines ``edgefer export`` prints: what was written, the checks, the search, the engine step."""
    from ..export.search.selection import describe_attempt, describe_kept

    out = Path(out)
    checks = result.checks
    lines = [f"wrote {out / result.model} ({result.target} {result.precision}"
             f"{', SYNTHETIC data' if result.synthetic else ''}) and {out / FILE_NAME}"]
    if "pytorch_vs_onnx" in checks:
        p = checks["pytorch_vs_onnx"]
        lines.append(f"  PyTorch vs ONNX: max |dlogit| {p['max_abs_logit_diff']:.2g}, top-1 agreement "
                     f"{p['top1_agreement']:.4f} on {p['n']} images")
    ref, exported = checks["reference"], checks.get("exported")
    if exported:
        line = (f"  {exported['file']} vs FP32: top-1 agreement {exported['top1_agreement']:.4f} on "
                f"{exported['n']} {checks['set']} images")
        if "macro_f1" in exported:
            line += (f"; macro-F1 {ref['macro_f1']:.3f} -> {exported['macro_f1']:.3f}, accuracy "
                     f"{ref['accuracy']:.3f} -> {exported['accuracy']:.3f}")
        lines.append(line)
    if result.executed_precision:
        e = result.executed_precision
        lines.append(f"  {e['runtime']} executes {result.model} in {e['default']} on {e['device']} with its defaults "
                     f"here" + (f"; the checks ran it in {e['checks']}" if e["checks"] != e["default"] else ""))
    if result.int8_search:
        search = result.int8_search
        chosen = search["attempts"][search["chosen"]]
        lines.append(f"  INT8 search (--max-drop {search['max_drop']:g} macro-F1): chose attempt "
                     f"#{chosen['index']} of {len(search['attempts'])} ({describe_attempt(chosen)}): drop "
                     f"{chosen['macro_f1_drop']:.4f}, top-1 agreement {chosen['top1_agreement']:.4f}; every "
                     f"attempt is in {out / FILE_NAME} int8_search")
        if "kept_in_float" in chosen:
            lines.append(f"    {describe_kept(chosen)}")
    step = result.tensorrt
    if step is not None and step.built:
        lines.append(f"  TensorRT {step.sidecar['tensorrt']} engine: {out / step.engine}")
    elif step is not None:
        lines += [f"  no TensorRT engine built ({step.reason}); on the target device run:",
                  f"    {step.build_engine_command}",
                  f"  or with trtexec (TensorRT 10.x / JetPack 6): {step.trtexec_command['tensorrt_10']}",
                  f"  or with trtexec (TensorRT 11.x): {step.trtexec_command['tensorrt_11']}"]
    if step is not None and step.implicit_int8 is not None:
        lines += ["  TensorRT 10.x implicit INT8 (DLA on JetPack 6) from the FP32 graph and the calibration cache:",
                  f"    {step.implicit_int8['build_engine_command']}",
                  f"  or with trtexec: {step.implicit_int8['trtexec_command']}"]
    return "\n".join(lines)


@click.command("build-engine")
@click.argument("onnx_model", type=_PATH)
@click.option("--out", type=_PATH, help="Engine file (default: beside the ONNX, .engine).")
@click.option("--fp32", is_flag=True, help="FP32 engine.")
@click.option("--fp16", is_flag=True, help="FP16 engine.")
@click.option("--int8", is_flag=True, help="INT8 engine from a Q/DQ ONNX (no calibrator: scales are in the graph).")
@click.option("--sidecar", type=_PATH, help="JSON spec when the ONNX carries no edgefer metadata.")
@_config_options(EngineSettings)
@click.option("--calib-cache", type=_PATH, help="TensorRT 10.x implicit INT8 (DLA): calibration cache for the FP32 "
              "graph (model.int8.calib from edgefer export); implies --int8.")
@click.option("--print-only", is_flag=True, help="Print the equivalent trtexec commands instead of building.")
@exist_ok_option
@verbosity_options
def build_engine(onnx_model, out, fp32, fp16, int8, sidecar, calib_cache, print_only, exist_ok, **values):
    """Build a TensorRT engine (+ JSON sidecar) from an exported ONNX, on the device that will run it.

    The precision defaults to the graph's own (Q/DQ -> int8, FP16 weights -> fp16, else fp32).
    """
    from ..errors import require
    from ..export import tensorrt
    from ..export.source import open_source

    spec = open_source(onnx_model, sidecar, option="ONNX_MODEL").spec
    int8 = int8 or calib_cache is not None
    precision = _precision(fp16, int8, fp32) if (fp16 or int8 or fp32) else tensorrt.detect_precision(onnx_model)
    settings = EngineSettings(**_groups(values)["engine"])
    options = tensorrt.fit_to_graph(settings.options(precision, str(calib_cache) if calib_cache else None), onnx_model)
    engine = out or tensorrt.engine_path_for(onnx_model)
    if not print_only:
        check_output(engine, "file", exist_ok)
    if print_only:
        from ..export.onnx import io_names

        with _echo_warnings():
            tensorrt.check_int8_source(onnx_model, options, 10)
        for major in (10,) if options.calib_cache else (10, 11):  # TensorRT 11: no implicit INT8
            click.echo(tensorrt.trtexec_command(onnx_model, engine, spec, options, io_names(onnx_model)[0], major))
        return
    require("tensorrt", "tensorrt", "building TensorRT engines")
    with _echo_warnings():
        info = tensorrt.build_engine(onnx_model, engine, options, spec=spec)
    click.echo(f"wrote {engine} (TensorRT {info['tensorrt']}, {precision}, GPU {info['gpu']}, batch "
               f"{options.min_batch}/{options.opt_batch}/{options.max_batch}) and {engine}.json")
