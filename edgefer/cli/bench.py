"""``edgefer bench``: latency and accuracy / macro-F1 drop per backend x precision, with reports and plots."""

from __future__ import annotations

import contextlib
import warnings

import click

from ..bench.run import BenchSettings
from ..bounds import BOUND_KEYS, from_click
from ..export.config import CalibOptions, OnnxOptions
from .options import Number, exist_ok_option, verbosity_options

MAX_BATCH = 65536
GATE_EXIT = 3  # the benchmark ran but a threshold the user gave (--fail-on-drop, --min-agreement, --min-speedup) failed


@contextlib.contextmanager
def _warnings_as_lines():
    """Warnings while the rows run, as they happen: edgefer's own (a calibration set under its floor, an engine
    note) one line ``edgefer: warning: ...`` each, never with a source file and line; a library's only with
    --verbose."""
    from .. import logs
    from ..export.calibration import CalibrationWarning
    from ..export.tensorrt import EngineWarning

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        if issubclass(category, (CalibrationWarning, EngineWarning)):
            click.echo(f"edgefer: warning: {text}", err=True)
        elif logs.verbosity() >= logs.VERBOSE:
            click.echo(f"edgefer: warning: {category.__name__}: {text} ({filename}:{lineno})", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _batches(ctx, param, value: str) -> tuple[int, ...]:
    try:
        batches = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated positive integers, got {value!r}") from None
    if not batches or min(batches) < 1 or max(batches) > MAX_BATCH:
        raise click.BadParameter(f"expected comma-separated integers in [1, {MAX_BATCH}], got {value!r}")
    return batches


def _click_kwargs(f) -> dict:
    """click.option keyword arguments for one ``BenchSettings`` field from its metadata."""
    from dataclasses import MISSING

    extra = dict(f.metadata["click"])
    default = f.default_factory() if f.default is MISSING else f.default
    kwargs = {"default": default, "help": f.metadata["help"]}
    if extra.pop("ints", False):
        kwargs.update(callback=_batches, default=",".join(map(str, default)), show_default=True, type=str)
    elif "choices" in extra:
        kwargs.update(type=click.Choice(extra.pop("choices")), show_default=True)
    elif extra.pop("exists", False):
        kwargs["type"] = click.Path(exists=True)
    elif from_click(extra) is not None:  # finite, an integer where it must be, in range: checked while parsing
        kwargs["type"] = Number(from_click(extra))
        extra = {k: v for k, v in extra.items() if k not in (*BOUND_KEYS, "type")}
        kwargs["show_default"] = default is not None
    kwargs.update(extra)
    return kwargs


# export options the bench passes through: ExportConfig.build name -> the export config field declaring it (and its
# bound, checked while parsing)
_EXPORT_FIELDS = {"calib_size": (CalibOptions, "size"), "parity_atol": (OnnxOptions, "parity_atol")}


def _settings_options(command):
    """Options generated from ``BenchSettings`` (field metadata: ``option``, ``help``, ``click``), the way
    ``edgefer train`` generates its options from ``TrainConfig``; ``export_options`` becomes the export options
    it names, declared as ``edgefer export`` declares them (default: the export's own)."""
    from dataclasses import fields

    for f in reversed(fields(BenchSettings)):
        if "export_options" in f.metadata:
            for name in reversed(f.metadata["export_options"]):
                group, field_name = _EXPORT_FIELDS[name]
                meta = next(g for g in fields(group) if g.name == field_name).metadata
                command = click.option(meta["option"], f"export__{name}", default=None,
                                       type=Number(from_click(meta["click"])),
                                       help=f"{meta['help']} (edgefer export's default when not given)")(command)
            continue
        command = click.option(f.metadata["option"], f.name, **_click_kwargs(f))(command)
    return command


@click.command()
@click.option("--model", "model", required=True, type=click.Path(exists=True),
              help="edgefer checkpoint (run dir, model.json or best.safetensors) or an ONNX classifier")
@click.option("--data", required=True, type=click.Path(exists=True), help="FER2013 CSV or image folders")
@_settings_options
@click.option("--out", "out_dir", default="runs/bench", show_default=True, type=click.Path(file_okay=False),
              help="report directory (bench.json, bench.csv, bench.md, PNGs, exported models under models/)")
@exist_ok_option
@verbosity_options
def bench(model, data, out_dir, exist_ok, **values):
    """Benchmark every available backend x precision against the FP32 reference.

    Rows that cannot run here (missing runtime, no GPU) or that fail keep their place with the reason.
    Exit status: 0, 2 on a user error, 3 when a threshold given with --fail-on-drop, --min-agreement or
    --min-speedup is not met.
    """
    from rich.console import Console

    from ..bench import run_bench
    from ..bench.report import print_table
    from ..fileio import check_output

    check_output(out_dir, "dir", exist_ok)
    console = Console(stderr=True, soft_wrap=True)  # a row's line stays one line whatever the terminal's width
    export_options = {k.split("__", 1)[1]: values.pop(k) for k in list(values) if k.startswith("export__")}
    export_options = {k: v for k, v in export_options.items() if v is not None}
    with _warnings_as_lines():
        report = run_bench(model, data, out_dir=out_dir, console=console, export_options=export_options, **values)
    print_table(report, Console())
    files = report["files"]
    click.echo(f"report: {files['markdown']}  (json: {files['json']}, csv: {files['csv']})")
    gate = report["gate"]
    if not gate["passed"]:
        for violation in gate["violations"]:
            click.echo(f"edgefer: {violation}", err=True)
        for command in dict.fromkeys(c for t in report.get("thresholds", []) for c in t.get("search", [])):
            click.echo(f"edgefer: search for an INT8 model within these bounds: {command}", err=True)
        raise SystemExit(GATE_EXIT)
