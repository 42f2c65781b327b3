"""The training loop: AdamW + cosine warm-up, gradient clipping, EMA, early stopping on validation
macro-F1, AMP and channels_last on CUDA, DistributedDataParallel under torchrun, and resumable state.

The parts live beside it: hardware (device, DDP, AMP), batches (splits, epoch order, augmented batches),
evaluation (logits as exported models are fed), state (what --resume restores), report (metrics files)."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import OutputError, UsageError
from ..fileio import check_output, new_stage, publish_stage, remove_stale_stages, sha256_file, write_json
from ..metrics import classification_report
from ..models import (
    META_NAME,
    WEIGHTS_NAME,
    create_model,
    has_new_classifier,
    load_checkpoint,
    optimizer_param_groups,
    read_checkpoint_meta,
    save_checkpoint,
    spec_for,
    zero_classifier,
    zero_init_residual,
)
from ..progress import progress
from ..spec import FER2013_LABELS
from .augment import Augmentation
from .batches import EpochBatches, epoch_order, load_splits
from .config import CONFIG_JSON, CONFIG_YAML, MAX_WARMUP_SHARE, TrainConfig
from .evaluation import evaluate_dataset, predict_sharded
from .hardware import AMP_NAMES, Hardware, autocast, setup_hardware
from .losses import ClassificationLoss, build_loss
from .report import METRICS_CSV, METRICS_JSONL, EpochLog, format_curve, format_report, write_evaluation
from .state import STATE_JSON, STATE_TENSORS, load_state, save_state, unwrap

SPLITS_JSON = "splits.json"
# What a run directory holds (docs/training.md); with --exist-ok the new run replaces these and keeps the rest.
RUN_FILES = (META_NAME, WEIGHTS_NAME, STATE_JSON, STATE_TENSORS, CONFIG_JSON, CONFIG_YAML, SPLITS_JSON,
             METRICS_JSONL, METRICS_CSV)
RUN_GLOBS = ("eval_*.json", "eval_*_confusion.png")


class Terminated(KeyboardInterrupt):
    """SIGTERM while training: handled like Ctrl-C (the last finished epoch stays resumable)."""


def is_run_file(name: str) -> bool:
    """True for the files a training run writes (those --exist-ok replaces)."""
    import fnmatch

    return name in RUN_FILES or any(fnmatch.fnmatch(name, pattern) for pattern in RUN_GLOBS)


def _versions() -> dict:
    import timm

    from .. import __version__

    return {"edgefer": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _hold_backbone(optimizer, frozen: bool) -> None:
    """During --freeze-epochs only the classifier learns: backbone groups get lr 0 (DDP-safe, no requires_grad
    changes), so AdamW neither updates nor decays them."""
    if frozen:
        for group in optimizer.param_groups:
            if not group.get("head", False):
                group["lr"] = 0.0


@dataclass
class Optimisation:
    """What one optimizer step needs besides the model and the batch."""

    criterion: ClassificationLoss
    optimizer: torch.optim.Optimizer
    scheduler: object  # timm CosineLRScheduler, stepped per update
    scaler: torch.amp.GradScaler
    ema: object | None  # timm ModelEmaV3
    grad_clip: float


def _train_epoch(model, loader, steps: Optimisation, state: dict, total_steps: int, frozen: bool,
                 hardware: Hardware, desc: str) -> tuple[float, int, int]:
    """One pass over ``loader`` (stopping at ``total_steps``); returns (summed loss, correct, seen)."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, target in progress(loader, total=len(loader), desc=desc, disable=None if hardware.is_main else True):
        if state["step"] >= total_steps:
            break
        steps.scheduler.step_update(state["step"])
        _hold_backbone(steps.optimizer, frozen)
        x, target = x.to(hardware.device, non_blocking=True), target.to(hardware.device, non_blocking=True)
        if hardware.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(hardware):
            logits = model(x)
        loss = steps.criterion(logits, target)
        steps.optimizer.zero_grad(set_to_none=True)
        steps.scaler.scale(loss).backward()
        steps.scaler.unscale_(steps.optimizer)
        if steps.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), steps.grad_clip)
        steps.scaler.step(steps.optimizer)
        steps.scaler.update()
        state["step"] += 1
        if steps.ema is not None:
            steps.ema.update(unwrap(model), step=state["step"])
        hard = target if target.ndim == 1 else target.argmax(1)
        loss_sum += float(loss.detach()) * len(x)
        correct += int((logits.detach().argmax(1) == hard).sum())
        seen += len(x)
    return loss_sum, correct, seen


def _stderr(message: str) -> None:
    from .. import logs

    logs.info(message)


@contextlib.contextmanager
def _deferred_interrupt():
    """Hold Ctrl-C while the checkpoint and state are written, so an interrupt never leaves them apart;
    the interrupt is raised right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            raise Terminated if signal.SIGTERM in pending else KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler or ``kill`` ending the run) raises ``Terminated``, handled like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def prepare_out(config: TrainConfig, resume: bool, exist_ok: bool = False, dry_run: bool = False) -> Path:
    """Check ``--out`` before any work: a new run needs an empty (or new) directory; one that already holds
    a run is continued with --resume or replaced with --exist-ok. Nothing is removed here: a replaced run is
    written beside the old one and takes its place once its first epoch is saved (``_Stage``)."""
    out = Path(config.out)
    if resume:
        return out
    holds_run = out.is_dir() and any((out / name).exists() for name in (META_NAME, STATE_JSON, CONFIG_JSON))
    if holds_run and not exist_ok:
        raise UsageError(f"--out {out}: already holds a training run; continue it with --resume {out}, "
                         "or pass --exist-ok to replace it (nothing was overwritten)")
    check_output(out, "dir", exist_ok=exist_ok)
    if not dry_run:
        remove_stale_stages(out)  # what killed runs left beside it
    return out


class _Stage:
    """Where a new run is written: a staging directory beside ``--out``, published as ``--out`` in one step once
    the first epoch (the checkpoint and the resumable state) is saved. Over a directory that already holds a run
    (``--exist-ok``) this replaces the old run's files and keeps the others. A kill, Ctrl-C or a full disk
    before that leaves ``--out`` as it was (the stage is removed, or by the next run after a kill)."""

    def __init__(self, out: Path, is_main: bool):
        self.out = out
        self.replacing = out.is_dir() and any(out.iterdir())
        self.dir = new_stage(out) if is_main else out

    @property
    def pending(self) -> bool:
        return self.dir != self.out

    @property
    def status(self) -> str:
        """``replacing`` (an earlier run is still in --out), ``new``, or empty once published (or not staged)."""
        return ("replacing" if self.replacing else "new") if self.pending else ""

    def publish(self) -> None:
        if self.pending:
            publish_stage(self.dir, self.out, keep=lambda name: not is_run_file(name))
            self.dir = self.out

    def discard(self) -> None:
        if self.pending and self.dir.exists():
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)


def fit(config: TrainConfig, resume: bool = False, log=_stderr, exist_ok: bool = False) -> dict:
    """Train as configured; write the run directory (see docs/training.md); return a summary dict
    (empty on ranks other than 0). With ``resume`` the run continues from ``config.out``'s last saved epoch;
    ``exist_ok`` replaces a run already in ``config.out``. On Ctrl-C the last finished epoch stays resumable
    and the command to continue is logged before KeyboardInterrupt propagates.
    """
    threads = torch.get_num_threads()
    state = {"epoch": 0, "step": 0, "staged": False}
    try:
        with _sigterm_as_interrupt():
            return _fit(config, resume, log, exist_ok, state)
    except KeyboardInterrupt as exc:
        out = Path(config.out)
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        if state["staged"] == "replacing":
            log(f"\n{what} at step {state['step']}, before the first epoch ended: {out} keeps the previous run")
        elif state["staged"]:
            log(f"\n{what} at step {state['step']}, before the first epoch ended: nothing to resume ({out} was "
                "not written)")
        elif (out / STATE_JSON).is_file():
            log(f"\n{what} at step {state['step']}; epoch {state['epoch']} is saved in {out}: continue with "
                f"`edgefer train --resume {out}`")
        else:
            log(f"\n{what} at step {state['step']}, before the first epoch ended: nothing to resume in {out}")
        raise
    finally:
        torch.set_num_threads(threads)  # --threads applies to this run only


def _fit(config: TrainConfig, resume: bool, log, exist_ok: bool, state: dict) -> dict:
    config = config.resolved()
    prepare_out(config, resume, exist_ok)
    hardware = setup_hardware(config)
    stage = _Stage(Path(config.out), hardware.is_main and not resume)
    state["staged"] = stage.status
    try:
        return _fit_in(config, resume, log, state, hardware, stage)
    except OutputError as exc:  # a full disk while staging: name --out, not the hidden stage
        raise OutputError(str(exc).replace(str(stage.dir), str(stage.out))) from None
    finally:
        stage.discard()


def _fit_in(config: TrainConfig, resume: bool, log, state: dict, hardware: Hardware, stage: _Stage) -> dict:
    out = stage.dir  # the run directory, or (replacing a run) its stage until the first epoch is saved
    from ..compat import import_timm

    import_timm()
    from timm.scheduler import CosineLRScheduler
    from timm.utils import ModelEmaV3

    log = log if hardware.is_main else (lambda message: None)
    torch.manual_seed(config.seed)

    splits, train = load_splits(config)
    val = splits.val
    counts = train.class_counts(len(FER2013_LABELS))
    criterion, weights = build_loss(config, counts)
    criterion = criterion.to(hardware.device)

    model_kwargs = {"drop_rate": config.drop_rate, "drop_path_rate": config.drop_path_rate}
    model = create_model(config.arch, pretrained=config.pretrained, weights=config.weights, **model_kwargs)
    if has_new_classifier(model, len(FER2013_LABELS), config.starts_from_weights):
        zero_classifier(model)
    zeroed = zero_init_residual(model) if config.zero_init_residual and not config.starts_from_weights else 0
    spec = spec_for(model, config.img_size, FER2013_LABELS, config.arch)
    model = model.to(hardware.device)
    if hardware.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(optimizer_param_groups(model, config.weight_decay, config.layer_decay), lr=config.lr)
    ema = ModelEmaV3(model, decay=config.ema, use_warmup=True) if config.ema else None

    per_rank = math.ceil(len(train) / hardware.world_size)
    steps_per_epoch = max(1, per_rank // config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), int(MAX_WARMUP_SHARE * total_steps))
    scheduler = CosineLRScheduler(optimizer, t_initial=total_steps, lr_min=config.min_lr, warmup_t=warmup,
                                  warmup_lr_init=config.lr * 0.01, t_in_epochs=False)
    scaler = torch.amp.GradScaler(hardware.device.type, enabled=hardware.amp_dtype == torch.float16)
    steps = Optimisation(criterion, optimizer, scheduler, scaler, ema, config.grad_clip)

    state.update({"epoch": 0, "step": 0, "best_f1": -1.0, "best_epoch": -1, "bad_epochs": 0,
                  "staged": stage.status})
    if resume:
        saved = load_state(out, model, ema, optimizer, scaler)
        state.update({k: saved[k] for k in state if k != "staged"})
        log(f"resuming {out} at epoch {state['epoch'] + 1} (step {state['step']})")
    if hardware.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[hardware.device.index] if hardware.device.type == "cuda" else None)

    info = {"config": config.to_dict(), "versions": _versions(), "loss": config.loss,
            "class_counts": counts.tolist(), "class_weights": None if weights is None else weights.tolist(),
            "synthetic": bool(splits.synthetic)}
    if hardware.is_main:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out)
        splits.save_manifest(out / SPLITS_JSON)
        info["data"] = {"source": str(config.data), "source_abs": os.path.abspath(config.data),
                        "fingerprint": splits.fingerprint, "manifest": SPLITS_JSON,
                        "manifest_sha256": sha256_file(out / SPLITS_JSON), "train_size": len(train),
                        "val_size": len(val), "limit_train": config.limit_train}
    zero_note = f" ({zeroed} residual branches start at zero)" if zeroed else ""
    log(f"{config.arch} @ {config.img_size}px on {hardware.device} x{hardware.world_size}"
        f" (amp {AMP_NAMES[hardware.amp_dtype]}, channels_last {hardware.channels_last}, {torch.get_num_threads()}"
        f" threads); recipe {config.recipe}{zero_note}; train {len(train)}, val {len(val)}, {steps_per_epoch} steps/epoch,"
        f" {total_steps} steps (warm-up {warmup}), lr {config.lr:g}; loss {config.loss}"
        + ("" if weights is None else f" weights {np.round(weights, 3).tolist()}")
        + (" [SYNTHETIC data]" if splits.synthetic else ""))

    epochs_log = EpochLog(out, completed_epochs=state["epoch"]) if hardware.is_main else None
    augmentation = Augmentation.from_config(config)
    images, labels = torch.from_numpy(np.ascontiguousarray(train.images)), torch.from_numpy(train.labels)
    workers = config.workers if config.workers >= 0 else (
        0 if hardware.device.type == "cpu" else min(8, (os.cpu_count() or 1) // hardware.world_size))
    stop_reason = "epochs"
    for epoch in range(state["epoch"], config.epochs):
        if state["step"] >= total_steps:
            break
        order = epoch_order(train.labels, config.seed, epoch, hardware, config.balanced_sampler)
        batches = EpochBatches(images, labels, order, config.batch_size, augmentation, spec, len(spec.labels),
                               config.seed, epoch, hardware.rank)
        loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=workers,
                                             pin_memory=hardware.device.type == "cuda")
        frozen = epoch < config.freeze_epochs
        started = time.perf_counter()
        loss_sum, correct, seen = _train_epoch(model, loader, steps, state, total_steps, frozen, hardware,
                                               desc=f"epoch {epoch + 1}/{config.epochs}")
        train_seconds = time.perf_counter() - started
        if hardware.distributed:  # train loss/accuracy over all processes
            totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=hardware.device)
            torch.distributed.all_reduce(totals)
            loss_sum, correct, seen = totals.tolist()

        eval_model = ema.module if ema is not None else unwrap(model)
        val_logits = predict_sharded(eval_model, val.images, spec, config.eval_batch_size, False, hardware)
        report = classification_report(val.labels, val_logits.argmax(1).numpy(), spec.labels)
        val_loss = float(torch.nn.functional.cross_entropy(val_logits, torch.from_numpy(val.labels)))
        improved = report["macro_f1"] > state["best_f1"]
        if improved:
            best = dict(best_f1=report["macro_f1"], best_epoch=epoch + 1, bad_epochs=0)
        else:
            best = dict(bad_epochs=state["bad_epochs"] + 1)
        record = {"epoch": epoch + 1, "step": state["step"], "lr": max(g["lr"] for g in optimizer.param_groups),
                  "frozen_backbone": frozen, "train_loss": loss_sum / max(seen, 1),
                  "train_accuracy": correct / max(seen, 1), "val_loss": val_loss,
                  "val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"],
                  **{f"val_recall_{k}": v["recall"] for k, v in report["per_class"].items()},
                  "train_seconds": round(train_seconds, 3),
                  "train_images_per_s": round(seen / max(train_seconds, 1e-9), 1)}
        with _deferred_interrupt():
            state.update(epoch=epoch + 1, **best)
            if hardware.is_main:
                if improved:
                    save_checkpoint(out, eval_model, spec, model_kwargs, **info, epoch=epoch + 1, step=state["step"],
                                    metrics={"val": report})
                epochs_log.append(record)
                save_state(out, model, ema, optimizer, scaler, {k: v for k, v in state.items() if k != "staged"})
                if stage.pending:  # the first epoch of a run that replaces another: now it takes the old one's place
                    stage.publish()
                    out = epochs_log.directory = stage.out
                    state["staged"] = ""
        log(f"epoch {epoch + 1}/{config.epochs} step {state['step']} lr {record['lr']:.2e}"
            f" loss {record['train_loss']:.4f} train-acc {record['train_accuracy']:.4f}"
            f" val-acc {report['accuracy']:.4f} val-F1 {report['macro_f1']:.4f}"
            f" (best {state['best_f1']:.4f} @ {state['best_epoch']}) {train_seconds:.1f}s"
            f" {record['train_images_per_s']:.0f} img/s")
        if state["bad_epochs"] >= config.patience:
            stop_reason = "early_stopping"
            log(f"early stopping: no val macro-F1 gain for {config.patience} epochs")
            break
    if stop_reason != "early_stopping" and total_steps < config.epochs * steps_per_epoch:
        stop_reason = "max_steps"

    if hardware.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if not hardware.is_main:
        return {}
    log(format_curve(epochs_log.records))
    return finish(out, splits, config, hardware, stop_reason, log)


def finish(out: Path, splits, config: TrainConfig, hardware: Hardware, stop_reason: str, log) -> dict:
    """Evaluate the best checkpoint on val and every test split; record the metrics in model.json."""
    hardware = Hardware(hardware.device, channels_last=hardware.channels_last)  # fp32, as the exported model runs
    model, spec, _ = load_checkpoint(out, device=str(hardware.device))
    if hardware.channels_last:
        model = model.to(memory_format=torch.channels_last)
    metrics = {}
    for name in ("val", "test", "private_test"):
        dataset = splits.get(name)
        if dataset is None or len(dataset) == 0:
            continue
        report = evaluate_dataset(model, dataset, spec, config.eval_batch_size, config.tta, hardware)
        metrics[name] = report
        write_evaluation(report, out / f"eval_{name}.json", title=f"{config.arch} on {name}", split=name, tta=config.tta)
        log(format_report(report, f"[{name}]" + (" SYNTHETIC data" if dataset.synthetic else "")))
    meta = read_checkpoint_meta(out)
    meta.update(metrics=metrics, stop_reason=stop_reason, tta=config.tta)
    write_json(out / META_NAME, meta)
    return {"run": str(out), "best_epoch": meta.get("epoch"), "stop_reason": stop_reason,
            "metrics": {k: {"accuracy": v["accuracy"], "macro_f1": v["macro_f1"]} for k, v in metrics.items()}}
