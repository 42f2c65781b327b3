"""``edgefer qat``: quantization-aware fine-tuning of a training run for TensorRT INT8 (see docs/qat.md).

Options are generated from ``edgefer.qat.QatConfig``; torch and ModelOpt are imported inside the command.
"""

from __future__ import annotations

import click

from ..errors import DataError
from ..qat import QAT_BOUNDS, QatConfig
from .options import Number, verbosity_options

_DEFAULTS = QatConfig()

# (option declaration, help, extra click kwargs); the dataclass field is the option's long name
# (``--from`` -> ``from_run``).
_OPTIONS = [
    ("--from", "Training run directory (or its model.json) to fine-tune.", dict(type=click.Path())),
    ("--out", "QAT run directory to create (weights, Q/DQ ONNX, OpenVINO INT8 IR, scales, qat.json).",
     dict(type=click.Path())),
    ("--data", "Training data (default: the data the run was trained on).", dict(type=click.Path())),
    ("--epochs", "Fine-tuning epochs.", dict(type=int)),
    ("--lr", "Peak AdamW learning rate (cosine decay to 0).", dict(type=float)),
    ("--batch-size", "Batch size (default: the run's).", dict(type=int)),
    ("--distill", "Weight of distillation towards the FP32 model's logits; the rest is the run's class-weighted loss.",
     dict(type=float)),
    ("--freeze-bn/--no-freeze-bn", "Keep BatchNorm statistics and dropout as trained.", {}),
    ("--residual/--no-residual", "Also quantize both inputs of every residual addition (NVIDIA's Q/DQ placement).",
     {}),
    ("--limit-train", "Fine-tune on a seeded stratified subset of N training images (default: as the run).", dict(type=int)),
    ("--calib-size", "Stratified calibration images (as edgefer calibrate).", dict(type=int)),
    ("--calib-seed", "Seed of the calibration draw.", dict(type=int)),
    ("--split", "Split on which agreement and macro-F1 are measured (val when the data has no test split).",
     dict(type=click.Choice(("val", "test", "private_test")))),
    ("--openvino/--no-openvino", "Also write the OpenVINO INT8 IR.", {}),
    ("--threads", "torch CPU threads.", dict(type=int)),
    ("--seed", "Seed of the fine-tuning order and augmentation.", dict(type=int)),
    ("--exist-ok", "Replace an existing --out (default: refuse).", dict(is_flag=True)),
]


def _field(declaration: str) -> str:
    name = declaration.split("/")[0][2:].replace("-", "_")
    return "from_run" if name == "from" else name


def _config_options(command):
    for declaration, help_text, extra in reversed(_OPTIONS):
        name = _field(declaration)
        default = getattr(_DEFAULTS, name)
        shown = default is not None and default != "" and default is not False  # 0 is a default worth showing
        kwargs = {"default": default, "show_default": shown, **extra}
        if name in QAT_BOUNDS:  # numbers: finite, an integer where it must be, in range (checked while parsing)
            kwargs["type"] = Number(QAT_BOUNDS[name])
        command = click.option(declaration, name, help=help_text, **kwargs)(command)
    return command


@click.command(context_settings={"show_default": True})
@_config_options
@verbosity_options
def qat(**values):
    """Quantization-aware fine-tuning for TensorRT INT8: fake quantization on Conv/Linear inputs (NVIDIA
    placement), calibration, a few epochs of the run's recipe, then the Q/DQ ONNX and OpenVINO INT8 IR with
    macro-F1 and agreement against the FP32 checkpoint."""
    from pathlib import Path

    from ..qat import run_qat

    config = QatConfig(**values).validate()
    if not Path(config.from_run).exists():
        raise DataError(f"--from {config.from_run}: no such run directory")
    result = run_qat(config, command=_command(values))
    for row in result.fidelity:
        click.echo(f"{row.model}: agreement {row.agreement:.4f}, macro-F1 {row.macro_f1:.4f} "
                   f"({-row.macro_f1_drop_points:+.2f} points vs FP32 {result.fp32_macro_f1:.4f}) on "
                   f"{result.split} ({result.images} images)" + (" [SYNTHETIC data]" if result.synthetic else ""))
    click.echo(f"wrote {result.out} ({', '.join(result.files)})"
               + ("" if result.calibration_cache else "; TensorRT calibration cache not written (scales in "
                  "qat_scales.json)"))


def _command(values: dict) -> str:
    """The command line that reproduces this run (options that differ from the defaults)."""
    parts = ["edgefer qat"]
    for declaration, _, extra in _OPTIONS:
        name = _field(declaration)
        value = values[name]
        if value == getattr(_DEFAULTS, name):
            continue
        if "/" in declaration:
            on, off = declaration.split("/")
            parts.append(on if value else off)
        elif extra.get("is_flag"):
            parts.append(declaration)
        else:
            parts.append(f"{declaration} {value}")
    return " ".join(parts)
