"""Seeded samples of part of a split: every capped sample in edgefer (the export's check set, the INT8 search's
sensitivity images, ``bench --limit``, ``train --limit-train``, the calibration set) is drawn here, per class in
proportion, never as "the first N" (image folders are read class by class, so the first N can be one class)."""

from __future__ import annotations

import numpy as np


def stratified_quota(counts, n: int, floor: int = 0) -> np.ndarray:
    """Images per class for a sample of ``n``: proportional to ``counts`` (largest remainder, so each class is
    within one image of its exact share), but at least ``min(floor, count)`` per class."""
    counts = np.asarray(counts, dtype=np.int64)
    n = min(int(n), int(counts.sum()))
    floors = np.minimum(counts, floor)
    if floors.sum() >= n:
        return balanced_quota(counts, n)
    floored = np.zeros(len(counts), bool)
    while True:  # classes whose proportional share is below their floor get the floor; the rest share what is left
        rest = n - floors[floored].sum()
        share = np.where(floored, 0.0, rest * counts / max(counts[~floored].sum(), 1))
        newly = ~floored & (share < floors)
        if not newly.any():
            break
        floored |= newly
    quota = np.where(floored, floors, np.floor(share)).astype(np.int64)
    return _add_remainder(quota, np.where(floored, 0.0, share - np.floor(share)), n, counts)


def balanced_quota(counts, n: int) -> np.ndarray:
    """As equal a split of ``n`` as the class counts allow (water-filling; leftovers to lower class indices)."""
    counts = np.asarray(counts, dtype=np.int64)
    n = min(int(n), int(counts.sum()))
    quota = np.zeros(len(counts), np.int64)
    while (missing := n - int(quota.sum())) > 0:
        open_ = quota < counts
        step = missing // int(open_.sum())
        if step == 0:
            return _add_remainder(quota, open_.astype(float), n, counts)
        quota = np.minimum(quota + np.where(open_, step, 0), counts)
    return quota


def _add_remainder(quota: np.ndarray, weight: np.ndarray, n: int, counts: np.ndarray) -> np.ndarray:
    """Give the images still missing to the classes with the largest ``weight`` (ties: lower class index)."""
    for k in sorted(range(len(quota)), key=lambda k: (-weight[k], k)):
        if quota.sum() >= n:
            break
        if quota[k] < counts[k]:
            quota[k] += 1
    return quota


def stratified_sample(labels, n: int | None, seed: int = 0, floor: int = 0) -> np.ndarray:
    """Indices of a seeded sample of ``n`` rows with every class in proportion (within one image per class; at
    least ``floor`` per class that has them), in a seeded shuffled order so that a slice of the sample is mixed
    too. ``n`` None or at least ``len(labels)``: every index, in order."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if n is None or n >= labels.size:
        return np.arange(labels.size, dtype=np.int64)
    if n < 0:
        raise ValueError(f"sample size must be >= 0, got {n}")
    counts = np.bincount(labels, minlength=int(labels.max(initial=-1)) + 1)
    quota = stratified_quota(counts, n, floor)
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.permutation(np.flatnonzero(labels == k))[: quota[k]] for k in range(len(counts))]
                            or [np.zeros(0, np.int64)])
    return rng.permutation(chosen.astype(np.int64))
