"""``edgefer train`` and ``edgefer eval``. Also runnable as ``python -m edgefer.cli.train`` (for torchrun).

torch, timm and the data layer are imported inside the command bodies so ``edgefer --help`` stays light.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import click

from ..errors import DataError, InputError, require
from ..train.config import (
    AMP_MODES,
    BOUNDS,
    CLASS_WEIGHT_METHODS,
    LOSSES,
    RECIPE_DEFAULTS,
    RECIPES,
    RESUMABLE_OVERRIDES,
    SPLITS,
    TrainConfig,
)
from .options import Number, exist_ok_option, verbosity_options

_DEFAULTS = TrainConfig()
_FIELDS = {f.name for f in fields(TrainConfig)}

# (option declaration, help, extra click kwargs); the dataclass field is the option's long name.
_OPTIONS = [
    ("--data", "FER2013 CSV or image folder (split or class folders; see docs/data.md).",
     dict(type=click.Path())),
    ("--out", "Run directory to create (checkpoint, config, metrics, plots).", dict(type=click.Path())),
    ("--arch", "Any timm model name.", {}),
    ("--img-size", "Network input size; 48x48 faces are resized bilinearly.", dict(type=int)),
    ("--pretrained/--no-pretrained", "Start from timm hub weights (needs internet).", {}),
    ("--weights", "Local timm state dict or .safetensors to start from (offline).", dict(type=click.Path())),
    ("--recipe", "Defaults for the options marked 'recipe': scratch (random init) or finetune (from weights); "
     "auto = finetune with --pretrained/--weights, else scratch.", dict(type=click.Choice(RECIPES))),
    ("--drop-rate", "Dropout before the linear head.", dict(type=float)),
    ("--drop-path-rate", "Stochastic depth rate.", dict(type=float)),
    ("--zero-init-residual/--no-zero-init-residual", "Start each residual block's last BatchNorm scale at zero "
     "(random init only).", dict(default=None)),
    ("--val-fraction", "Stratified share of train held out for validation.", dict(type=float)),
    ("--skip-bad", "Skip malformed rows/images instead of failing.", dict(is_flag=True)),
    ("--limit-train", "Train on a seeded stratified subset of N images (quick runs).", dict(type=int)),
    ("--loss", "Training loss.", dict(type=click.Choice(LOSSES))),
    ("--class-weights", "Class weights for weighted-ce/focal.", dict(type=click.Choice(CLASS_WEIGHT_METHODS))),
    ("--focal-gamma", "Focusing parameter of --loss focal.", dict(type=float)),
    ("--label-smoothing", "Label smoothing.", dict(type=float)),
    ("--balanced-sampler", "Draw classes uniformly (with replacement) instead of shuffling.", dict(is_flag=True)),
    ("--scale-min", "Random resized crop: minimum kept area fraction.", dict(type=float)),
    ("--rotation", "Random rotation range in degrees (+-).", dict(type=float)),
    ("--hflip", "Horizontal flip probability.", dict(type=float)),
    ("--brightness", "Brightness jitter (factor 1 +- b).", dict(type=float)),
    ("--contrast", "Contrast jitter (factor 1 +- c).", dict(type=float)),
    ("--erasing", "Random erasing probability per image.", dict(type=float)),
    ("--mixup", "Probability that a batch is mixed up.", dict(type=float)),
    ("--cutmix", "Probability that a batch gets cutmix.", dict(type=float)),
    ("--epochs", "Maximum number of epochs.", dict(type=int)),
    ("--max-steps", "Stop after this many optimizer steps (the schedule is fitted to it).", dict(type=int)),
    ("--batch-size", "Batch size per process.", dict(type=int)),
    ("--lr", "Peak AdamW learning rate.", dict(type=float)),
    ("--min-lr", "Learning rate at the end of the cosine.", dict(type=float)),
    ("--weight-decay", "AdamW weight decay (not on biases and norms).", dict(type=float)),
    ("--warmup-epochs", "Linear warm-up length in epochs.", dict(type=float)),
    ("--grad-clip", "Gradient norm clip (0 = off).", dict(type=float)),
    ("--layer-decay", "Layer-wise LR decay factor, e.g. 0.8 (off when not given).", dict(type=float)),
    ("--freeze-epochs", "Train only the classifier for the first N epochs.", dict(type=int)),
    ("--ema", "Keep an EMA of the weights with this decay, e.g. 0.999; evaluated and saved instead.",
     dict(type=float)),
    ("--patience", "Early stopping: epochs without val macro-F1 gain.", dict(type=int)),
    ("--amp", "Mixed precision; auto = bf16 (or fp16) on CUDA, off on CPU.", dict(type=click.Choice(AMP_MODES))),
    ("--channels-last/--no-channels-last", "NHWC memory format (default: on for CUDA).", dict(default=None)),
    ("--device", "auto, cpu, cuda or cuda:N.", {}),
    ("--workers", "DataLoader processes building batches (-1 = 0 on CPU, up to 8 on CUDA).", dict(type=int)),
    ("--threads", "torch CPU threads.", dict(type=int)),
    ("--tta", "Flip test-time augmentation in the final evaluation.", dict(is_flag=True)),
    ("--eval-batch-size", "Batch size for evaluation.", dict(type=int)),
    ("--seed", "Seed for the split, sampling, augmentation and initialisation.", dict(type=int)),
]


def _field(declaration: str) -> str:
    return declaration.split("/")[0][2:].replace("-", "_")


def _config_options(command):
    for declaration, help_text, extra in reversed(_OPTIONS):
        name = _field(declaration)
        default = getattr(_DEFAULTS, name)
        kwargs = {"default": default, "show_default": default not in (None, ""), **extra}
        if name in BOUNDS:  # numbers: finite, an integer where it must be, in range (checked while parsing)
            kwargs["type"] = Number(BOUNDS[name])
        if name in RECIPE_DEFAULTS["scratch"]:
            kwargs["show_default"] = "recipe: " + ", ".join(f"{r} {v[name]}" for r, v in RECIPE_DEFAULTS.items())
        command = click.option(declaration, name, help=help_text, **kwargs)(command)
    return command


def _given(ctx: click.Context, values: dict) -> dict:
    """The options the user actually typed (or set through the environment)."""
    explicit = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    return {k: v for k, v in values.items() if k in _FIELDS and ctx.get_parameter_source(k) in explicit}


def _resumed_config(run_dir: str, given: dict) -> TrainConfig:
    """The saved config of ``run_dir`` with the options that may change on resume applied."""
    config = TrainConfig.load(run_dir)
    saved = config.to_dict()
    changed = sorted(k for k, v in given.items() if k not in RESUMABLE_OVERRIDES and k != "out" and v != saved[k])
    if changed:
        names = ", ".join("--" + k.replace("_", "-") for k in changed)
        raise InputError(f"--resume {run_dir}: {names} cannot change when resuming (saved in config.json)")
    return TrainConfig.from_dict({**saved, **{k: v for k, v in given.items() if k in RESUMABLE_OVERRIDES},
                                  "out": str(run_dir)})


@click.command(context_settings={"show_default": True})
@click.option("--resume", type=click.Path(), help="Continue an interrupted run directory from its last epoch.")
@exist_ok_option
@verbosity_options
@_config_options
@click.pass_context
def train(ctx, resume, exist_ok, **values):
    """Train a FER classifier (EfficientNetV2-S by default) into a run directory.

    From scratch unless --pretrained or --weights is given (--recipe). Single process by default; under torchrun
    (WORLD_SIZE > 1) it trains with DistributedDataParallel. Ctrl-C keeps the last finished epoch: continue
    with --resume RUN_DIR (SIGTERM too). With --exist-ok the new run replaces the old one's files once its
    first epoch is saved; until then the old run stays as it was.
    """
    given = _given(ctx, values)
    if resume:
        config = _resumed_config(resume, given)
    else:
        for required in ("data", "out"):
            if not values[required]:
                raise InputError(f"--{required} is required (or --resume RUN_DIR)")
        if not Path(values["data"]).exists():
            raise DataError(f"--data {values['data']}: no such file or directory")
        config = TrainConfig(**values).resolved()

    require("torch", "train", "training")
    from ..train.loop import fit, prepare_out

    prepare_out(config, bool(resume), exist_ok, dry_run=True)
    try:
        summary = fit(config, resume=bool(resume), exist_ok=exist_ok)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: fit has said how to continue
        from ..train.loop import Terminated

        ctx.exit(143 if isinstance(exc, Terminated) else 130)
    if summary:
        parts = [f"{name}: accuracy {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f}"
                 for name, m in summary["metrics"].items()]
        click.echo(f"checkpoint {summary['run']} (best epoch {summary['best_epoch']}, stopped: "
                   f"{summary['stop_reason']}); " + "; ".join(parts))


@click.command()
@verbosity_options
@click.option("--model", "model_path", required=True, type=click.Path(),
              help="Checkpoint: run directory, its model.json or best.safetensors.")
@click.option("--data", type=click.Path(), help="Data to score (default: the data the model was trained on).")
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True,
              help="Split to score; 'val' recreates the training validation split from the saved seed.")
@click.option("--tta/--no-tta", default=None, help="Flip test-time augmentation (default: as trained).")
@click.option("--json", "json_out", type=click.Path(),
              help="Metrics JSON to write (default: <run>/eval_<split>.json for the training data, "
                   "<run>/eval_<split>_<data name>.json for other data); the confusion PNG goes beside it.")
@exist_ok_option
@click.option("--batch-size", type=Number(BOUNDS["eval_batch_size"]), default=256, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--threads", type=Number(BOUNDS["threads"]), help="torch CPU threads.")
def evaluate(model_path, data, split, tta, json_out, exist_ok, batch_size, device, threads):
    """Accuracy, macro-F1, per-class precision/recall/F1 and confusion matrix of a checkpoint.

    Existing metrics files (also the run's own eval_<split>.json) are only replaced with --exist-ok.
    """
    if json_out:  # checked before anything is read
        _check_eval_outputs(json_out, exist_ok, "--json")
    from ..data import prepare_splits
    from ..models import checkpoint_paths, load_checkpoint, read_checkpoint_meta, training_data
    require("torch", "train", "evaluating a checkpoint")
    from ..train.evaluation import evaluate_dataset
    from ..train.hardware import Hardware, setup_hardware
    from ..train.report import format_report, write_evaluation

    settings = TrainConfig(device=device, threads=threads, amp="off").validate()

    meta = read_checkpoint_meta(model_path)
    trained = meta.get("config", {})
    data = data or training_data(meta)
    if not data:
        raise InputError("--data is required: the checkpoint does not record its training data")
    if not Path(data).exists():
        raise DataError(f"--data {data}: no such file or directory")
    splits = prepare_splits(data, val_fraction=trained.get("val_fraction", 0.1), seed=trained.get("seed", 0),
                            skip_bad=trained.get("skip_bad", False))
    dataset = splits.get(split)
    if dataset is None or len(dataset) == 0:
        raise DataError(f"{data}: has no '{split}' split (available: "
                        f"{', '.join(k for k, v in splits.datasets().items() if v is not None and len(v))})")
    trained_on = meta.get("data", {}).get("fingerprint")
    if split == "val" and trained_on and trained_on != splits.fingerprint:
        click.echo(f"warning: {data} differs from the training data (fingerprint); 'val' is not the training "
                   "validation split", err=True)
    if not json_out:
        # the run's own eval_<split>.json is about its training data; other data gets a file named after it
        same_data = trained_on == splits.fingerprint if trained_on else str(data) == str(trained.get("data"))
        name = f"eval_{split}.json" if same_data else f"eval_{split}_{_slug(Path(data).stem)}.json"
        json_out = checkpoint_paths(model_path)[1].parent / name
        _check_eval_outputs(json_out, exist_ok, "--json (default)")  # needs the data's fingerprint; before the work
    hardware = Hardware(setup_hardware(settings).device)
    model, spec, meta = load_checkpoint(model_path, device=str(hardware.device))
    tta = meta.get("config", {}).get("tta", False) if tta is None else tta
    report = evaluate_dataset(model, dataset, spec, batch_size, tta, hardware)
    synthetic = bool(splits.synthetic)
    click.echo(format_report(report, f"{meta['arch']} on {data} [{split}]" + (" SYNTHETIC data" if synthetic else "")))
    json_path, png = write_evaluation(report, json_out, title=f"{meta['arch']} on {split}", model=str(model_path),
                                      data=str(data), split=split, tta=tta, data_fingerprint=splits.fingerprint,
                                      synthetic=synthetic)
    click.echo(f"wrote {json_path} and {png}")


def _check_eval_outputs(json_out, exist_ok: bool, option: str) -> None:
    """The metrics JSON and the confusion PNG beside it must be writable files that may be replaced."""
    from ..fileio import check_output
    from ..train.report import confusion_png_path

    check_output(json_out, "file", exist_ok, option)
    check_output(confusion_png_path(json_out), "file", exist_ok, f"{option}'s confusion PNG")


def _slug(name: str) -> str:
    """A file-name-safe version of a data set's name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "data"


if __name__ == "__main__":  # torchrun --nproc_per_node=N -m edgefer.cli.train --data ... --out ...
    from . import main

    main(["train", *sys.argv[1:]])
