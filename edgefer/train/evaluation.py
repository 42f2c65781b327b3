"""Scoring during and after training: logits exactly as exported models are fed, sharded under DDP."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..metrics import classification_report
from ..progress import progress
from ..spec import ModelSpec
from .augment import prepare_batch
from .hardware import Hardware, autocast


@torch.no_grad()
def predict_logits(model, images, spec: ModelSpec, batch_size: int = 256, tta: bool = False,
                   hardware: Hardware | None = None, desc: str = "") -> torch.Tensor:
    """Float32 logits (N, classes) on the CPU for uint8 faces (N, H, W), preprocessed as at export time.
    ``tta`` averages the logits of the image and its horizontal mirror."""
    hardware = hardware or Hardware(next(model.parameters()).device)
    images = torch.as_tensor(images)
    was_training = model.training
    model.eval()
    out = []
    starts = range(0, len(images), batch_size)
    for start in progress(starts, total=len(starts), desc=desc or "eval", disable=None if hardware.is_main else True):
        x = prepare_batch(images[start : start + batch_size], spec).to(hardware.device, non_blocking=True)
        if hardware.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(hardware):
            logits = model(x).float()
            if tta:
                logits = (logits + model(x.flip(-1)).float()) / 2
        out.append(logits.cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, spec.num_classes)


def predict_sharded(model, images, spec, batch_size, tta, hardware: Hardware) -> torch.Tensor:
    """Every process predicts every world_size-th image; the logits are all-gathered in the original order."""
    if not hardware.distributed:
        return predict_logits(model, images, spec, batch_size, tta, hardware)
    n, world = len(images), hardware.world_size
    per_rank = math.ceil(n / world)
    idx = np.arange(hardware.rank, n, world)
    idx = np.concatenate([idx, np.full(per_rank - len(idx), idx[-1] if len(idx) else 0)])
    logits = predict_logits(model, images[idx], spec, batch_size, tta, hardware).to(hardware.device)
    gathered = [torch.empty_like(logits) for _ in range(world)]
    torch.distributed.all_gather(gathered, logits)
    out = torch.empty(n, logits.shape[1])
    for rank, part in enumerate(gathered):
        count = len(range(rank, n, world))
        out[rank::world] = part[:count].cpu()
    return out


def evaluate_dataset(model, dataset, spec: ModelSpec, batch_size: int = 256, tta: bool = False,
                     hardware: Hardware | None = None) -> dict:
    """scikit-learn metrics (edgefer.metrics.classification_report) of a model on a FERDataset. Image folders
    holding more than 48 px gray faces are evaluated on faces read from the files at the model's own input size
    (``FERDataset.faces``, streamed in chunks), never on the 48 px copy."""
    if dataset.originals is None:
        logits = predict_logits(model, dataset.images, spec, batch_size, tta, hardware, desc=f"eval {dataset.name}")
    else:
        chunk = max(batch_size, 1024)
        logits = torch.cat([predict_logits(model, dataset.faces(slice(start, start + chunk), spec.input_size), spec,
                                           batch_size, tta, hardware, desc=f"eval {dataset.name}")
                            for start in range(0, len(dataset), chunk)])
    return classification_report(dataset.labels, logits.argmax(1).numpy(), spec.labels)
