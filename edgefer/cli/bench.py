"""``edgefer bench``: latency and accuracy / macro-F1 drop per backend x precision, with reports and plots."""

from __future__ import annotations

import click

from .options import exist_ok_option, verbosity_options

GATE_EXIT = 3  # the benchmark ran but an INT8 row lost more macro-F1 than --fail-on-drop allows


def _batches(ctx, param, value: str) -> tuple[int, ...]:
    try:
        batches = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated positive integers, got {value!r}") from None
    if not batches or min(batches) < 1:
        raise click.BadParameter(f"expected comma-separated positive integers, got {value!r}")
    return batches


@click.command()
@click.option("--model", "model", required=True, type=click.Path(exists=True),
              help="edgefer checkpoint (run dir, model.json or best.safetensors) or an ONNX classifier")
@click.option("--data", required=True, type=click.Path(exists=True), help="FER2013 CSV or image folders")
@click.option("--split", default="auto", show_default=True,
              help="images to measure accuracy on: auto (the test split, else the whole labelled data), all, or a "
                   "split name (train/val/test/private_test)")
@click.option("--targets", default="all", show_default=True,
              help="rows to run: comma-separated row keys or groups (all, torch, onnx, onnxruntime, openvino, "
                   "tensorrt, fp32, fp16, int8); the FP32 reference always runs")
@click.option("--batch", "batches", default="1,32", show_default=True, callback=_batches,
              help="batch sizes for throughput")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: all usable cores)")
@click.option("--iters", type=click.IntRange(min=1), default=None, help="timed runs per measurement (budget)")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="seconds per measurement (budget; default 3 s when --iters is not given)")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="untimed runs first")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="use only the first N images of the split")
@click.option("--calib", type=click.Path(exists=True), default=None,
              help="calibration bundle for INT8 exports (default: drawn from --data's train split)")
@click.option("--calib-data", type=click.Path(exists=True), default=None,
              help="labelled data to draw the INT8 calibration set from (default: --data's train split, or a "
                   "disjoint stratified part of a folder evaluated whole)")
@click.option("--calib-size", type=click.IntRange(min=1), default=None,
              help="calibration images drawn for INT8 exports (edgefer export's default when not given)")
@click.option("--parity-atol", type=click.FloatRange(min=0), default=None,
              help="max |logit difference| PyTorch vs ONNX the export accepts (edgefer export's default when not given)")
@click.option("--out", "out_dir", default="runs/bench", show_default=True, type=click.Path(file_okay=False),
              help="report directory (bench.json, bench.csv, bench.md, PNGs, exported models under models/)")
@click.option("--fail-on-drop", type=click.FloatRange(min=0), default=None,
              help=f"exit {GATE_EXIT} when an INT8 row loses more macro-F1 than this (fraction: 0.01 = 1 point)")
@click.option("--no-plots", is_flag=True, help="skip the PNG plots")
@exist_ok_option
@verbosity_options
def bench(model, data, out_dir, calib_size, parity_atol, no_plots, exist_ok, **settings):
    """Benchmark every available backend x precision against the FP32 reference.

    Rows that cannot run here (missing runtime, no GPU) or that fail keep their place with the reason.
    Exit status: 0, 2 on a user error, 3 when --fail-on-drop is exceeded.
    """
    from rich.console import Console

    from ..bench import run_bench
    from ..bench.report import print_table
    from ..fileio import check_output

    check_output(out_dir, "dir", exist_ok)
    console = Console(stderr=True)
    export_options = {k: v for k, v in (("calib_size", calib_size), ("parity_atol", parity_atol)) if v is not None}
    report = run_bench(model, data, out_dir=out_dir, console=console, export_options=export_options,
                       plots=not no_plots, **settings)
    print_table(report, Console())
    files = report["files"]
    click.echo(f"report: {files['markdown']}  (json: {files['json']}, csv: {files['csv']})")
    gate = report["gate"]
    if not gate["passed"]:
        for violation in gate["violations"]:
            click.echo(f"edgefer: --fail-on-drop {gate['fail_on_drop']}: {violation}", err=True)
        raise SystemExit(GATE_EXIT)
