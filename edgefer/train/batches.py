"""What the trainer feeds the model: the run's splits, each epoch's sample order and its augmented batches."""

from __future__ import annotations

import numpy as np
import torch

from ..data.sampling import stratified_sample
from ..errors import InputError
from .config import TrainConfig
from .hardware import Hardware


def load_splits(config: TrainConfig):
    """prepare_splits with the run's options, plus the seeded --limit-train subset of train."""
    from ..data import prepare_splits

    splits = prepare_splits(config.data, val_fraction=config.val_fraction, seed=config.seed, skip_bad=config.skip_bad)
    train = splits.train
    if config.limit_train is not None and config.limit_train < len(train):
        keep = np.sort(stratified_sample(train.labels, config.limit_train, seed=config.seed))
        train = train.subset(keep)
    if len(train) < 2:
        raise InputError(f"{config.data}: the train split has {len(train)} image(s); need at least 2")
    if len(splits.val) == 0:
        raise InputError(f"{config.data}: the validation split is empty (--val-fraction {config.val_fraction})")
    return splits, train


def batch_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integers (run seed, epoch, batch, rank)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def epoch_order(labels: np.ndarray, seed: int, epoch: int, hardware: Hardware, balanced: bool) -> np.ndarray:
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
    shard = DistributedSampler(order, num_replicas=hardware.world_size, rank=hardware.rank, shuffle=False)
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
