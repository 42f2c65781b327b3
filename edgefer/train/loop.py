"""The training loop: AdamW + cosine warm-up, gradient clipping, EMA, early stopping on validation
macro-F1, AMP and channels_last on CUDA, DistributedDataParallel under torchrun, and resumable state."""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import EdgeferError, InputError, ModelError
from ..fileio import atomic_path, sha256_file, write_json
from ..metrics import classification_report
from ..models import (
    META_NAME,
    create_model,
    load_checkpoint,
    optimizer_param_groups,
    read_checkpoint_meta,
    save_checkpoint,
    spec_for,
)
from ..progress import progress
from ..spec import FER2013_LABELS, ModelSpec
from .augment import Augmentation, prepare_batch
from .config import TrainConfig
from .losses import ClassificationLoss
from .report import EpochLog, format_report, write_evaluation

STATE_TENSORS, STATE_JSON = "last_state.safetensors", "last_state.json"
SPLITS_JSON = "splits.json"


# ----------------------------------------------------------------------------------------------- hardware


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: device, distributed rank/world size, AMP dtype and memory format."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_runtime(config: TrainConfig) -> Runtime:
    """Pick the device, join the process group when started by torchrun (WORLD_SIZE > 1), resolve auto options."""
    if config.threads:
        torch.set_num_threads(config.threads)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if config.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(config.device)
        except RuntimeError:
            raise InputError(f"--device: unknown device {config.device!r} (cpu, cuda, cuda:N)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"--device {config.device}: CUDA is not available on this machine")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if world_size > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    if world_size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    amp = config.amp
    if amp == "auto":
        amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "off"
    if amp == "fp16" and device.type != "cuda":
        raise InputError("--amp fp16 needs CUDA; on CPU use --amp bf16 or off")
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    amp_dtype = {name: dtype for dtype, name in AMP_NAMES.items()}[amp]
    return Runtime(device, rank, world_size, amp_dtype, channels_last)


AMP_NAMES = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}


def _autocast(runtime: Runtime):
    return torch.autocast(runtime.device.type, dtype=runtime.amp_dtype, enabled=runtime.amp_dtype is not None)


# ----------------------------------------------------------------------------------------------- batches


def batch_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integers (run seed, epoch, batch, rank)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def epoch_order(labels: np.ndarray, seed: int, epoch: int, runtime: Runtime, balanced: bool) -> np.ndarray:
    """This process's sample indices for one epoch: a seeded shuffle (or class-balanced draw with
    replacement), sharded across processes by DistributedSampler (padded so every rank has as many)."""
    from torch.utils.data import DistributedSampler

    generator = torch.Generator().manual_seed(batch_seed(seed, epoch))
    n = len(labels)
    if balanced:
        counts = np.bincount(labels, minlength=int(labels.max()) + 1)
        weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.float64)
        order = torch.multinomial(weights, n, replacement=True, generator=generator).numpy()
    else:
        order = torch.randperm(n, generator=generator).numpy()
    shard = DistributedSampler(order, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=False)
    return order[list(shard)]


class EpochBatches(torch.utils.data.Dataset):
    """Item ``i`` is the augmented batch ``i`` of an epoch: (float input, integer or soft targets).

    Each batch draws from its own generator seeded by (seed, epoch, batch, rank), so batches are the
    same whether built in the main process or in DataLoader workers, and after --resume.
    """

    def __init__(self, images, labels, order, batch_size, augmentation, spec, num_classes, seed, epoch, rank):
        self.images, self.labels = images, labels
        count = max(1, len(order) // batch_size)  # drop the ragged tail (BatchNorm needs > 1 sample)
        self.batches = [order[i * batch_size : (i + 1) * batch_size] for i in range(count)]
        self.augmentation, self.spec, self.num_classes = augmentation, spec, num_classes
        self.keys = (seed, epoch, rank)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        generator = torch.Generator().manual_seed(batch_seed(*self.keys, index))
        idx = torch.as_tensor(self.batches[index])
        x = self.augmentation(self.images[idx], self.spec, generator)
        return self.augmentation.mix(x, self.labels[idx], self.num_classes, generator)


# ----------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict_logits(model, images, spec: ModelSpec, batch_size: int = 256, tta: bool = False,
                   runtime: Runtime | None = None, desc: str = "") -> torch.Tensor:
    """Float32 logits (N, classes) on the CPU for uint8 faces (N, H, W), preprocessed as at export time.
    ``tta`` averages the logits of the image and its horizontal mirror."""
    runtime = runtime or Runtime(next(model.parameters()).device)
    images = torch.as_tensor(images)
    was_training = model.training
    model.eval()
    out = []
    starts = range(0, len(images), batch_size)
    for start in progress(starts, total=len(starts), desc=desc or "eval", disable=None if runtime.is_main else True):
        x = prepare_batch(images[start : start + batch_size], spec).to(runtime.device, non_blocking=True)
        if runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(runtime):
            logits = model(x).float()
            if tta:
                logits = (logits + model(x.flip(-1)).float()) / 2
        out.append(logits.cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, spec.num_classes)


def _predict_sharded(model, images, spec, batch_size, tta, runtime: Runtime) -> torch.Tensor:
    """Every process predicts every world_size-th image; the logits are all-gathered in the original order."""
    if not runtime.distributed:
        return predict_logits(model, images, spec, batch_size, tta, runtime)
    n, world = len(images), runtime.world_size
    per_rank = math.ceil(n / world)
    idx = np.arange(runtime.rank, n, world)
    idx = np.concatenate([idx, np.full(per_rank - len(idx), idx[-1] if len(idx) else 0)])
    logits = predict_logits(model, images[idx], spec, batch_size, tta, runtime).to(runtime.device)
    gathered = [torch.empty_like(logits) for _ in range(world)]
    torch.distributed.all_gather(gathered, logits)
    out = torch.empty(n, logits.shape[1])
    for rank, part in enumerate(gathered):
        count = len(range(rank, n, world))
        out[rank::world] = part[:count].cpu()
    return out


def evaluate_dataset(model, dataset, spec: ModelSpec, batch_size: int = 256, tta: bool = False,
                     runtime: Runtime | None = None) -> dict:
    """scikit-learn metrics (edgefer.metrics.classification_report) of a model on a FERDataset."""
    logits = predict_logits(model, dataset.images, spec, batch_size, tta, runtime, desc=f"eval {dataset.name}")
    return classification_report(dataset.labels, logits.argmax(1).numpy(), spec.labels)


# ----------------------------------------------------------------------------------------------- data


def load_splits(config: TrainConfig):
    """prepare_splits with the run's options, plus the seeded --limit-train subset of train."""
    from ..data import prepare_splits

    splits = prepare_splits(config.data, val_fraction=config.val_fraction, seed=config.seed, skip_bad=config.skip_bad)
    train = splits.train
    if config.limit_train is not None and config.limit_train < len(train):
        keep = np.sort(np.random.default_rng(config.seed).permutation(len(train))[: config.limit_train])
        train = train.subset(keep)
    if len(train) < 2:
        raise InputError(f"{config.data}: the train split has {len(train)} image(s); need at least 2")
    if len(splits.val) == 0:
        raise InputError(f"{config.data}: the validation split is empty (--val-fraction {config.val_fraction})")
    return splits, train


def build_loss(config: TrainConfig, counts: np.ndarray) -> tuple[ClassificationLoss, np.ndarray | None]:
    """The criterion and the class weights it uses (None for plain CE)."""
    from ..data import class_weights

    weights = None if config.loss == "ce" else class_weights(counts, method=config.class_weights)
    gamma = config.focal_gamma if config.loss == "focal" else 0.0
    loss = ClassificationLoss(None if weights is None else torch.as_tensor(weights, dtype=torch.float32),
                              config.label_smoothing, gamma)
    return loss, weights


# ----------------------------------------------------------------------------------------------- resumable state


def save_state(directory: Path, model, ema, optimizer, scaler, progress_state: dict) -> None:
    """Everything --resume needs: tensors in safetensors, the rest as JSON (nothing is ever unpickled).
    The LR schedule is not saved: it is a function of the step and the config, rebuilt on resume."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v for k, v in _unwrap(model).state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.module.state_dict().items()})
    optim = optimizer.state_dict()
    scalars = {}
    for index, slots in optim["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(directory / STATE_TENSORS) as tmp:
        save_file(tensors, str(tmp))
    write_json(directory / STATE_JSON, {
        **progress_state,
        "optimizer_param_groups": [{k: v for k, v in g.items()} for g in optim["param_groups"]],
        "optimizer_scalars": scalars,
        "scaler": scaler.state_dict(),
        "tensors_sha256": sha256_file(directory / STATE_TENSORS),
    })


def load_state(directory: Path, model, ema, optimizer, scaler) -> dict:
    """Restore what save_state wrote; return the progress dict (epoch, step, best, ...)."""
    import json

    from safetensors.torch import load_file

    json_path, tensor_path = directory / STATE_JSON, directory / STATE_TENSORS
    if not json_path.is_file() or not tensor_path.is_file():
        raise ModelError(f"--resume {directory}: no saved training state ({STATE_JSON}, {STATE_TENSORS})")
    meta = json.loads(json_path.read_text(encoding="utf-8"))
    if sha256_file(tensor_path) != meta.get("tensors_sha256"):
        raise ModelError(f"--resume {directory}: {STATE_TENSORS} does not match {STATE_JSON} (interrupted write?)")
    tensors = load_file(str(tensor_path))

    def prefixed(prefix):
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    _unwrap(model).load_state_dict(prefixed("model."))
    if ema is not None:
        ema.module.load_state_dict(prefixed("ema."))
    state: dict = {}
    for key, value in prefixed("optim.").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for key, value in meta["optimizer_scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
    scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[f"rng.cuda.{i}"] for i in range(len(prefixed("rng.cuda.")))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    return meta


def _unwrap(model):
    return getattr(model, "module", model)


# ----------------------------------------------------------------------------------------------- training


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
                 runtime: Runtime, desc: str) -> tuple[float, int, int]:
    """One pass over ``loader`` (stopping at ``total_steps``); returns (summed loss, correct, seen)."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, target in progress(loader, total=len(loader), desc=desc, disable=None if runtime.is_main else True):
        if state["step"] >= total_steps:
            break
        steps.scheduler.step_update(state["step"])
        _hold_backbone(steps.optimizer, frozen)
        x, target = x.to(runtime.device, non_blocking=True), target.to(runtime.device, non_blocking=True)
        if runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(runtime):
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
            steps.ema.update(_unwrap(model), step=state["step"])
        hard = target if target.ndim == 1 else target.argmax(1)
        loss_sum += float(loss.detach()) * len(x)
        correct += int((logits.detach().argmax(1) == hard).sum())
        seen += len(x)
    return loss_sum, correct, seen


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fit(config: TrainConfig, resume: bool = False, log=_stderr) -> dict:
    """Train as configured; write the run directory (see docs/training.md); return a summary dict
    (empty on ranks other than 0). With ``resume`` the run continues from ``config.out``'s last saved epoch.
    """
    threads = torch.get_num_threads()
    try:
        return _fit(config, resume, log)
    finally:
        torch.set_num_threads(threads)  # --threads applies to this run only


def _fit(config: TrainConfig, resume: bool, log) -> dict:
    from ..compat import import_timm

    import_timm()
    from timm.scheduler import CosineLRScheduler
    from timm.utils import ModelEmaV3

    config.validate()
    out = Path(config.out)
    if not resume and any((out / name).exists() for name in (META_NAME, STATE_JSON)):
        raise EdgeferError(f"--out {out} already holds a training run; continue it with --resume {out}, "
                           "or choose another --out (nothing was overwritten)")
    runtime = setup_runtime(config)
    log = log if runtime.is_main else (lambda message: None)
    torch.manual_seed(config.seed)

    splits, train = load_splits(config)
    val = splits.val
    counts = train.class_counts(len(FER2013_LABELS))
    criterion, weights = build_loss(config, counts)
    criterion = criterion.to(runtime.device)

    model_kwargs = {"drop_rate": config.drop_rate, "drop_path_rate": config.drop_path_rate}
    model = create_model(config.arch, pretrained=config.pretrained, weights=config.weights, **model_kwargs)
    spec = spec_for(model, config.img_size, FER2013_LABELS, config.arch)
    model = model.to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(optimizer_param_groups(model, config.weight_decay, config.layer_decay), lr=config.lr)
    ema = ModelEmaV3(model, decay=config.ema, use_warmup=True) if config.ema else None

    per_rank = math.ceil(len(train) / runtime.world_size)
    steps_per_epoch = max(1, per_rank // config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), max(total_steps - 1, 0))
    scheduler = CosineLRScheduler(optimizer, t_initial=total_steps, lr_min=config.min_lr, warmup_t=warmup,
                                  warmup_lr_init=config.lr * 0.01, t_in_epochs=False)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    steps = Optimisation(criterion, optimizer, scheduler, scaler, ema, config.grad_clip)

    state = {"epoch": 0, "step": 0, "best_f1": -1.0, "best_epoch": -1, "bad_epochs": 0}
    if resume:
        saved = load_state(out, model, ema, optimizer, scaler)
        state = {k: saved[k] for k in state}
        log(f"resuming {out} at epoch {state['epoch'] + 1} (step {state['step']})")
    if runtime.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)

    info = {"config": config.to_dict(), "versions": _versions(), "loss": config.loss,
            "class_counts": counts.tolist(), "class_weights": None if weights is None else weights.tolist(),
            "synthetic": bool(splits.synthetic)}
    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out)
        splits.save_manifest(out / SPLITS_JSON)
        info["data"] = {"source": str(config.data), "fingerprint": splits.fingerprint, "manifest": SPLITS_JSON,
                        "manifest_sha256": sha256_file(out / SPLITS_JSON), "train_size": len(train),
                        "val_size": len(val), "limit_train": config.limit_train}
    log(f"{config.arch} @ {config.img_size}px on {runtime.device} x{runtime.world_size}"
        f" (amp {AMP_NAMES[runtime.amp_dtype]}, channels_last {runtime.channels_last}); train {len(train)}, val {len(val)},"
        f" {steps_per_epoch} steps/epoch, {total_steps} steps; loss {config.loss}"
        + ("" if weights is None else f" weights {np.round(weights, 3).tolist()}")
        + (" [SYNTHETIC data]" if splits.synthetic else ""))

    epochs_log = EpochLog(out, completed_epochs=state["epoch"]) if runtime.is_main else None
    augmentation = Augmentation.from_config(config)
    images, labels = torch.from_numpy(np.ascontiguousarray(train.images)), torch.from_numpy(train.labels)
    workers = config.workers if config.workers >= 0 else (
        0 if runtime.device.type == "cpu" else min(8, (os.cpu_count() or 1) // runtime.world_size))
    stop_reason = "epochs"
    for epoch in range(state["epoch"], config.epochs):
        if state["step"] >= total_steps:
            break
        order = epoch_order(train.labels, config.seed, epoch, runtime, config.balanced_sampler)
        batches = EpochBatches(images, labels, order, config.batch_size, augmentation, spec, len(spec.labels),
                               config.seed, epoch, runtime.rank)
        loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=workers,
                                             pin_memory=runtime.device.type == "cuda")
        frozen = epoch < config.freeze_epochs
        started = time.perf_counter()
        loss_sum, correct, seen = _train_epoch(model, loader, steps, state, total_steps, frozen, runtime,
                                               desc=f"epoch {epoch + 1}/{config.epochs}")
        train_seconds = time.perf_counter() - started
        if runtime.distributed:  # train loss/accuracy over all processes
            totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=runtime.device)
            torch.distributed.all_reduce(totals)
            loss_sum, correct, seen = totals.tolist()

        eval_model = ema.module if ema is not None else _unwrap(model)
        val_logits = _predict_sharded(eval_model, val.images, spec, config.eval_batch_size, False, runtime)
        report = classification_report(val.labels, val_logits.argmax(1).numpy(), spec.labels)
        val_loss = float(torch.nn.functional.cross_entropy(val_logits, torch.from_numpy(val.labels)))
        improved = report["macro_f1"] > state["best_f1"]
        state["epoch"] = epoch + 1
        if improved:
            state.update(best_f1=report["macro_f1"], best_epoch=epoch + 1, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        record = {"epoch": epoch + 1, "step": state["step"], "lr": max(g["lr"] for g in optimizer.param_groups),
                  "frozen_backbone": frozen, "train_loss": loss_sum / max(seen, 1),
                  "train_accuracy": correct / max(seen, 1), "val_loss": val_loss,
                  "val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"],
                  **{f"val_recall_{k}": v["recall"] for k, v in report["per_class"].items()},
                  "train_seconds": round(train_seconds, 3),
                  "train_images_per_s": round(seen / max(train_seconds, 1e-9), 1)}
        if runtime.is_main:
            if improved:
                save_checkpoint(out, eval_model, spec, model_kwargs, **info, epoch=epoch + 1, step=state["step"],
                                metrics={"val": report})
            epochs_log.append(record)
            save_state(out, model, ema, optimizer, scaler, state)
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

    if runtime.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if not runtime.is_main:
        return {}
    return finish(out, splits, config, runtime, stop_reason, log)


def finish(out: Path, splits, config: TrainConfig, runtime: Runtime, stop_reason: str, log) -> dict:
    """Evaluate the best checkpoint on val and every test split; record the metrics in model.json."""
    runtime = Runtime(runtime.device, channels_last=runtime.channels_last)  # fp32, as the exported model runs
    model, spec, _ = load_checkpoint(out, device=str(runtime.device))
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    metrics = {}
    for name in ("val", "test", "private_test"):
        dataset = splits.get(name)
        if dataset is None or len(dataset) == 0:
            continue
        report = evaluate_dataset(model, dataset, spec, config.eval_batch_size, config.tta, runtime)
        metrics[name] = report
        write_evaluation(report, out / f"eval_{name}.json", title=f"{config.arch} on {name}", split=name, tta=config.tta)
        log(format_report(report, f"[{name}]" + (" SYNTHETIC data" if dataset.synthetic else "")))
    meta = read_checkpoint_meta(out)
    meta.update(metrics=metrics, stop_reason=stop_reason, tta=config.tta)
    write_json(out / META_NAME, meta)
    return {"run": str(out), "best_epoch": meta.get("epoch"), "stop_reason": stop_reason,
            "metrics": {k: {"accuracy": v["accuracy"], "macro_f1": v["macro_f1"]} for k, v in metrics.items()}}
