"""``edgefer calibrate``, ``edgefer export`` and ``edgefer build-engine``.

Options are validated by ``edgefer.export`` (one ``ExportError`` line listing what is supported, exit 2);
heavy imports happen inside the commands.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import click

from ..errors import ExportError

_PATH = click.Path(path_type=Path)


@contextlib.contextmanager
def _echo_warnings():
    """Print calibration warnings (classes under the floor) as one ``edgefer: warning:`` line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    from ..export.calibration import CalibrationWarning

    for warning in caught:
        from ..export.tensorrt import EngineWarning

        if issubclass(warning.category, (CalibrationWarning, EngineWarning)):
            click.echo(f"edgefer: warning: {warning.message}", err=True)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def _calib_options(func):
    for decorator in reversed([
        click.option("--calib-size", default=512, show_default=True, type=int, help="Calibration images to draw."),
        click.option("--calib-strategy", default="stratified", show_default=True,
                     help="stratified (proportional, per-class floor), balanced or random."),
        click.option("--calib-seed", default=0, show_default=True, type=int, help="Seed of the draw."),
        click.option("--calib-floor", default=16, show_default=True, type=int,
                     help="Stratified: at least this many images of every class that has them."),
        click.option("--val-fraction", default=0.1, show_default=True, type=float,
                     help="Validation share carved from the training data (as edgefer train does)."),
        click.option("--split-seed", default=0, show_default=True, type=int,
                     help="Seed of the train/val split (as edgefer train --seed)."),
    ]):
        func = decorator(func)
    return func


def _engine_options(func):
    for decorator in reversed([
        click.option("--batch", "batch", default="1,8,32", show_default=True,
                     help="TensorRT optimisation profile MIN,OPT,MAX batch (one number: fixed)."),
        click.option("--workspace", default=1024, show_default=True, type=int, help="TensorRT workspace limit, MiB."),
        click.option("--timing-cache", type=_PATH, help="TensorRT timing cache file (loaded if present, saved after)."),
        click.option("--dla-core", type=int, help="Jetson: build for this DLA core (GPU fallback on)."),
        click.option("--strongly-typed/--weakly-typed", default=None,
                     help="TensorRT network typing (default: strongly typed on TensorRT 11+, weakly on 10.x)."),
    ]):
        func = decorator(func)
    return func


def _precision(fp16: bool, int8: bool, fp32: bool = False) -> str:
    if sum((fp16, int8, fp32)) > 1:
        raise ExportError("choose one precision: --fp16 or --int8 (FP32 is the default); "
                          "--fp16 --int8 together is not supported")
    return "int8" if int8 else "fp16" if fp16 else "fp32"


def _engine(precision: str, batch: str, workspace: int, timing_cache, dla_core, strongly_typed):
    from ..export.tensorrt import EngineOptions, parse_batch

    lo, opt, hi = parse_batch(batch)
    return EngineOptions(precision=precision, min_batch=lo, opt_batch=opt, max_batch=hi, workspace_mb=workspace,
                         timing_cache=str(timing_cache) if timing_cache else None, dla_core=dla_core,
                         strongly_typed=strongly_typed).validate()


@click.command()
@click.option("--data", required=True, type=_PATH, help="FER2013 CSV or image folders; draws from the train split.")
@click.option("--out", required=True, type=_PATH, help="Bundle directory (calib.npz + manifest.json).")
@_calib_options
def calibrate(data: Path, out: Path, calib_size, calib_strategy, calib_seed, calib_floor, val_fraction, split_seed):
    """Draw a seeded INT8 calibration set from the training split and save it as a portable bundle.

    The same data and options give byte-identical files; every INT8 export can reuse it with --calib.
    """
    from ..export.calibration import from_data

    with _echo_warnings():
        calib = from_data(data, calib_size, calib_strategy, calib_seed, calib_floor, val_fraction=val_fraction,
                          split_seed=split_seed)
    calib.save(out)
    counts = ", ".join(f"{k} {v}" for k, v in calib.manifest["per_class"].items())
    tag = " SYNTHETIC" if calib.synthetic else ""
    click.echo(f"wrote {out}/calib.npz + manifest.json: {len(calib)}{tag} images ({calib_strategy}, seed "
               f"{calib_seed}): {counts}")


@click.command()
@click.option("--model", required=True, type=_PATH,
              help="edgefer checkpoint (run dir, model.json or best.safetensors) or any ONNX classifier.")
@click.option("--sidecar", type=_PATH, help="JSON spec for an ONNX model without edgefer metadata "
              "(labels, input_size, channels, mean, std, color_order); default <model>.onnx.json.")
@click.option("--target", required=True, help="onnx, openvino or tensorrt.")
@click.option("--fp16", is_flag=True, help="FP16 (TensorRT: FP16 ONNX with FP32 I/O; OpenVINO: FP16 weights).")
@click.option("--int8", is_flag=True, help="INT8 calibrated on --data or --calib.")
@click.option("--out", required=True, type=_PATH, help="Output directory (files + export.json).")
@click.option("--data", type=_PATH, help="FER2013 CSV or image folders: validation images for the checks and "
              "the training split for calibration.")
@click.option("--calib", type=_PATH, help="Reuse a calibration bundle from edgefer calibrate.")
@_calib_options
@click.option("--quantizer", help="INT8 quantizer: ort (ONNX Runtime Q/DQ; onnx/tensorrt), nncf (openvino).")
@click.option("--calib-method", default="moving-average", show_default=True,
              help="Q/DQ calibration: moving-average, minmax, entropy or percentile.")
@click.option("--keep-fp", multiple=True, help="Leave nodes in floating point: first-conv, classifier or an "
              "fnmatch pattern on node names (repeatable).")
@click.option("--preset", default="mixed", show_default=True, help="OpenVINO NNCF preset: mixed or performance.")
@click.option("--subset-size", type=int, help="OpenVINO NNCF: calibration images used (default: all).")
@click.option("--fast-bias-correction/--bias-correction", default=True, show_default=True,
              help="OpenVINO NNCF bias correction algorithm.")
@click.option("--exporter", default="auto", show_default=True,
              help="auto (dynamo, legacy on failure), dynamo or legacy.")
@click.option("--simplify", is_flag=True, help="Run the onnxscript optimizer on the exported graph.")
@click.option("--parity-atol", type=float, help="Max |logit difference| PyTorch vs ONNX (default 1e-3).")
@_engine_options
@click.option("--build-engine/--no-build-engine", "build", default=None,
              help="Build the TensorRT engine here (default: when tensorrt is installed).")
@click.option("--max-drop", type=float, help="--int8 accuracy gate: largest allowed macro-F1 drop vs FP32 on the "
              "validation split, as an ABSOLUTE macro-F1 difference (0.005 = 0.5 percentage points); searches "
              "calibration methods, then keeps sensitive layers in FP32 (docs/int8_gate.md). Needs --data.")
@click.option("--min-agreement", type=float, help="--max-drop: also require this top-1 agreement with FP32 on "
              "the validation split, as a fraction (0.995 = 99.5 %).")
@click.option("--gate-budget", default=12, show_default=True, type=int,
              help="--max-drop: at most this many quantization attempts.")
@click.option("--gate-seconds", type=float, help="--max-drop: stop starting new attempts after this many seconds.")
def export(model, sidecar, target, fp16, int8, out, data, calib, calib_size, calib_strategy, calib_seed,
           calib_floor, val_fraction, split_seed, quantizer, calib_method, keep_fp, preset, subset_size,
           fast_bias_correction, exporter, simplify, parity_atol, batch, workspace, timing_cache, dla_core,
           strongly_typed, build, max_drop, min_agreement, gate_budget, gate_seconds):
    """Export to ONNX, OpenVINO or TensorRT-ready graphs, check them, and write export.json.

    \b
    edgefer export --model runs/fer --target tensorrt --int8 --data fer2013.csv --out export/trt-int8
    edgefer export --model runs/fer --target openvino --int8 --calib calib/ --data fer2013.csv --out export/ov
    edgefer export --model my.onnx --sidecar my.json --target onnx --out export/onnx
    edgefer export --model runs/fer --target tensorrt --int8 --max-drop 0.005 --data fer2013.csv --out export/gated
    """
    from .. import export as exporting

    precision = _precision(fp16, int8)
    exporting.validate_request(target, precision, quantizer=quantizer, data=data, calib=calib,
                               calib_method=calib_method, calib_strategy=calib_strategy, keep_fp=keep_fp)
    engine = _engine(precision, batch, workspace, timing_cache, dla_core, strongly_typed) if target == "tensorrt" \
        else None
    with _echo_warnings():
        result = exporting.export(
            model, target, precision, out, data=data, calib=calib, sidecar=sidecar, calib_size=calib_size,
            calib_strategy=calib_strategy, calib_seed=calib_seed, calib_floor=calib_floor, val_fraction=val_fraction,
            split_seed=split_seed, quantizer=quantizer, calib_method=calib_method, keep_fp=keep_fp, preset=preset,
            subset_size=subset_size, fast_bias_correction=fast_bias_correction, exporter=exporter,
            simplify=simplify, parity_atol=parity_atol, engine=engine, build_engine=build, max_drop=max_drop,
            min_agreement=min_agreement, gate_budget=gate_budget, gate_seconds=gate_seconds)
    click.echo(_summary(result, out))


def _summary(result: dict, out: Path) -> str:
    checks = result["checks"]
    lines = [f"wrote {out / result['model']} ({result['target']} {result['precision']}"
             f"{', SYNTHETIC data' if result['synthetic'] else ''}) and {out / 'export.json'}"]
    if "pytorch_vs_onnx" in checks:
        p = checks["pytorch_vs_onnx"]
        lines.append(f"  PyTorch vs ONNX: max |dlogit| {p['max_abs_logit_diff']:.2g}, top-1 agreement "
                     f"{p['top1_agreement']:.4f} on {p['n']} images")
    ref, exported = checks["reference"], checks.get("exported")
    if exported:
        line = f"  {exported['file']} vs FP32: top-1 agreement {exported['top1_agreement']:.4f} on {exported['n']} " \
               f"{checks['set']} images"
        if "macro_f1" in exported:
            line += f"; macro-F1 {ref['macro_f1']:.3f} -> {exported['macro_f1']:.3f}, accuracy " \
                    f"{ref['accuracy']:.3f} -> {exported['accuracy']:.3f}"
        lines.append(line)
    search = result.get("int8_search")
    if search:
        from ..export.gate import describe_attempt

        chosen = search["attempts"][search["chosen"]]
        lines.append(f"  INT8 gate (--max-drop {search['max_drop']:g} macro-F1): chose attempt #{chosen['index']} of "
                     f"{len(search['attempts'])} ({describe_attempt(chosen)}): drop {chosen['macro_f1_drop']:.4f}, "
                     f"top-1 agreement {chosen['top1_agreement']:.4f}; every attempt is in export.json int8_search")
    step = result.get("tensorrt")
    if step and step.get("built"):
        lines.append(f"  TensorRT {step['sidecar']['tensorrt']} engine: {out / step['engine']}")
    elif step:
        lines += [f"  no TensorRT engine built ({step['reason']}); on the target device run:",
                  f"    {step['build_engine_command']}",
                  f"  or with trtexec (TensorRT 10.x / JetPack 6): {step['trtexec_command']['tensorrt_10']}",
                  f"  or with trtexec (TensorRT 11.x): {step['trtexec_command']['tensorrt_11']}"]
    return "\n".join(lines)


@click.command("build-engine")
@click.argument("onnx_model", type=_PATH)
@click.option("--out", type=_PATH, help="Engine file (default: beside the ONNX, .engine).")
@click.option("--fp32", is_flag=True, help="FP32 engine.")
@click.option("--fp16", is_flag=True, help="FP16 engine.")
@click.option("--int8", is_flag=True, help="INT8 engine from a Q/DQ ONNX (no calibrator: scales are in the graph).")
@click.option("--sidecar", type=_PATH, help="JSON spec when the ONNX carries no edgefer metadata.")
@_engine_options
@click.option("--calib-cache", type=_PATH, help="TensorRT 10.x implicit INT8 (DLA): calibration cache for the FP32 "
              "graph (model.int8.calib from edgefer export); implies --int8.")
@click.option("--allow-gpu-fallback/--no-gpu-fallback", default=True, show_default=True,
              help="With --dla-core: run layers DLA cannot run on the GPU (else the build fails).")
@click.option("--print-only", is_flag=True, help="Print the equivalent trtexec commands instead of building.")
def build_engine(onnx_model, out, fp32, fp16, int8, sidecar, batch, workspace, timing_cache, dla_core,
                 strongly_typed, calib_cache, allow_gpu_fallback, print_only):
    """Build a TensorRT engine (+ JSON sidecar) from an exported ONNX, on the device that will run it.

    The precision defaults to the graph's own (Q/DQ -> int8, FP16 weights -> fp16, else fp32).
    """
    from ..errors import require
    from ..export import tensorrt
    from ..export.source import open_source

    spec = open_source(onnx_model, sidecar).spec
    int8 = int8 or calib_cache is not None
    precision = _precision(fp16, int8, fp32) if (fp16 or int8 or fp32) else tensorrt.detect_precision(onnx_model)
    import dataclasses

    options = tensorrt.fit_to_graph(dataclasses.replace(  # --calib-cache/--allow-gpu-fallback: build-engine only
        _engine(precision, batch, workspace, timing_cache, dla_core, strongly_typed),
        calib_cache=str(calib_cache) if calib_cache else None, allow_gpu_fallback=allow_gpu_fallback).validate(),
        onnx_model)
    engine = out or tensorrt.engine_path_for(onnx_model)
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
