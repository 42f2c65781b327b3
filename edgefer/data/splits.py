"""Seeded stratified train/val split, the split manifest with a data fingerprint, and class weights."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..fileio import write_json
from .dataset import SPLIT_NAMES, FERDataset
from .readers import SPLIT_ORDER, Loaded, Report, load

MANIFEST_VERSION = 1
EFFECTIVE_BETA = 0.999


def class_weights(counts, method: str = "inverse", beta: float = EFFECTIVE_BETA) -> np.ndarray:
    """Per-class loss weights from class counts, normalised to mean 1 over the classes present.

    ``inverse``: w_c proportional to 1 / n_c. ``effective`` (Cui et al. 2019, "effective number of samples"):
    w_c proportional to (1 - beta) / (1 - beta ** n_c). Classes with no samples get weight 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError(f"counts must be a 1-D vector of non-negative numbers, got {counts.tolist()!r}")
    present = counts > 0
    if not present.any():
        raise ValueError("counts are all zero: no class weights")
    weights = np.zeros_like(counts)
    if method == "inverse":
        weights[present] = 1.0 / counts[present]
    elif method == "effective":
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        weights[present] = (1.0 - beta) / (1.0 - beta ** counts[present])
    else:
        raise ValueError(f"unknown class-weight method {method!r} (use 'inverse' or 'effective')")
    weights[present] /= weights[present].mean()
    return weights


def stratified_split(labels, ids, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices), both sorted. Per class, round(n_c * val_fraction) samples go to val
    (at least one when the class has two or more and val_fraction > 0), chosen by the order of
    sha256(f"{seed}:{id}"): the same ids and seed give the same split on any machine or numpy version,
    whatever the order the data was read in."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    keys = np.array([hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in ids])
    val = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = int(np.floor(members.size * val_fraction + 0.5))
        if val_fraction > 0 and members.size >= 2:
            take = min(max(take, 1), members.size - 1)
        val.append(members[np.argsort(keys[members], kind="stable")[:take]])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train_mask = np.ones(labels.size, bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx


def dataset_digest(dataset: FERDataset, digest=None):
    """Feed a split's ids, labels and pixels into a sha256 (new one unless ``digest`` is given)."""
    digest = digest or hashlib.sha256()
    digest.update(f"{dataset.name}\n{len(dataset)}\n".encode())
    digest.update("\n".join(dataset.ids.tolist()).encode())
    digest.update(dataset.labels.astype("<i8").tobytes())
    digest.update(np.ascontiguousarray(dataset.images).data)
    return digest


def fingerprint(loaded: Loaded) -> str:
    """sha256 over every split as read (ids, labels, pixels): the same for the same data, wherever it lies."""
    digest = hashlib.sha256(b"edgefer-data-v1\n")
    for name in SPLIT_ORDER:
        if name in loaded.splits:
            dataset_digest(loaded.splits[name], digest)
    return digest.hexdigest()


@dataclass
class Splits:
    """train / val (from train, or a val/ folder) / test / private_test, with provenance."""

    train: FERDataset
    val: FERDataset
    test: FERDataset | None
    private_test: FERDataset | None
    manifest: dict
    fingerprint: str
    report: Report
    source: str
    synthetic: bool

    def get(self, name: str) -> FERDataset | None:
        """The split called ``name`` (train, val, test, private_test), or None when absent or unknown."""
        return getattr(self, name) if name in SPLIT_NAMES else None

    def datasets(self) -> dict:
        """The splits present, in the order train, val, test, private_test."""
        return {name: self.get(name) for name in SPLIT_NAMES if self.get(name) is not None}

    @property
    def classes(self) -> tuple:
        """The class names of the label indices (FER2013's 7, plus e.g. contempt when the data has it)."""
        return self.train.classes

    def class_counts(self) -> np.ndarray:
        """Train-split class counts (the only counts weights are computed from)."""
        return self.train.class_counts()

    def class_weights(self, method: str = "inverse", beta: float = EFFECTIVE_BETA) -> np.ndarray:
        return class_weights(self.class_counts(), method, beta)

    def save_manifest(self, path: str | Path) -> Path:
        """Write the manifest as JSON (atomically; sorted keys, no timestamps: same data + seed, same bytes)."""
        return write_json(path, self.manifest)


def prepare_splits(path, val_fraction: float = 0.1, seed: int = 0, skip_bad: bool = False) -> Splits:
    """Load ``path`` (or take an already ``Loaded`` one) and split its train data into train/val,
    stratified and seeded; the official test splits are kept as they are. A ``val`` folder in the data
    is used as the validation split instead (``val_fraction`` is then not used)."""
    loaded = path if isinstance(path, Loaded) else load(path, skip_bad=skip_bad)
    full_train = loaded.get("train")
    if full_train is None:
        raise DataError(f"{loaded.source}: no training data (no Usage=Training rows or train/ folder; the data has: "
                        f"{', '.join(loaded.splits)}); evaluating such data needs no training split")
    if loaded.get("val") is not None:
        train, val, val_from = full_train, loaded["val"], "val folder"
    else:
        train_idx, val_idx = stratified_split(full_train.labels, full_train.ids, val_fraction, seed)
        train, val = full_train.subset(train_idx, "train"), full_train.subset(val_idx, "val")
        val_from = "train (stratified, seeded)"
    splits = Splits(train=train, val=val, test=loaded.get("test"), private_test=loaded.get("private_test"),
                    manifest={}, fingerprint=fingerprint(loaded), report=loaded.report, source=loaded.source,
                    synthetic=loaded.synthetic)
    splits.manifest = _manifest(splits, loaded, val_fraction, seed, val_from)
    return splits


def _manifest(splits: Splits, loaded: Loaded, val_fraction: float, seed: int, val_from: str) -> dict:
    counts = splits.class_counts()
    root = Path(loaded.source)
    return {
        "manifest_version": MANIFEST_VERSION,
        "source_name": root.name,
        "format": loaded.format,
        "synthetic": splits.synthetic,
        "fingerprint": splits.fingerprint,
        "seed": seed,
        "val_fraction": val_fraction,
        "val_from": val_from,
        "test_split": loaded.test_split,
        "labels": list(splits.classes),
        "class_weights": {
            "computed_from": "train",
            "inverse": _rounded(class_weights(counts, "inverse")),
            "effective": _rounded(class_weights(counts, "effective")),
            "effective_beta": EFFECTIVE_BETA,
        },
        "splits": {
            name: {"n": len(ds), "class_counts": ds.class_counts(len(splits.classes)).tolist(),
                   "sha256": dataset_digest(ds).hexdigest(), "ids": ds.ids.tolist()}
            for name, ds in splits.datasets().items()
        },
        "skipped": [{**entry, "file": _relative(entry["file"], root)} for entry in loaded.report.skipped],
    }


def _rounded(values: np.ndarray) -> list:
    return [round(float(v), 6) for v in values]


def _relative(file: str, root: Path) -> str:
    """A skipped file's name relative to the data root, so the manifest does not depend on where data lies."""
    file = Path(file)
    if file != root and file.is_relative_to(root):
        return file.relative_to(root).as_posix()
    return file.name


def inspect_report(splits: Splits) -> dict:
    """What ``edgefer data inspect`` prints: per-split per-class counts and pixel stats, train class
    weights, and every skipped bad row/file."""
    counts = splits.class_counts()
    return {
        "source": splits.source,
        "format": splits.manifest["format"],
        "synthetic": splits.synthetic,
        "fingerprint": splits.fingerprint,
        "seed": splits.manifest["seed"],
        "val_fraction": splits.manifest["val_fraction"],
        "val_from": splits.manifest["val_from"],
        "test_split": splits.manifest["test_split"],
        "splits": {name: ds.stats() for name, ds in splits.datasets().items()},
        "class_weights": {"computed_from": "train", "inverse": _rounded(class_weights(counts, "inverse")),
                          "effective": _rounded(class_weights(counts, "effective")), "effective_beta": EFFECTIVE_BETA},
        "bad": splits.report.to_dict(),
    }


# ------------------------------------------------------------------------------- evaluation data


def evaluation_set(data, split: str = "auto", skip_bad: bool = False) -> FERDataset:
    """The labelled images to evaluate a model on, from a path or an already ``Loaded`` data set.

    ``split="all"``: the whole data set, every split concatenated (a plain class-folder directory, a CSV
    without Usage, or a folder holding only ``test/`` all work). A split name (``train``, ``val``, ``test``,
    ``private_test``): that split, or ``DataError`` naming the splits the data has. ``"auto"``: the ``test``
    split when the data has one, else the whole data set. The returned data set's ``name`` says which
    (``"test"``, ``"all"`` ...), so reports can state what was evaluated."""
    loaded = data if isinstance(data, Loaded) else load(data, skip_bad=skip_bad)
    if split == "auto":
        split = "test" if loaded.get("test") is not None else "all"
    if split == "all":
        parts = [loaded.splits[name] for name in SPLIT_ORDER if name in loaded.splits]
        if len(parts) == 1:
            return parts[0].subset(np.arange(len(parts[0])), "all")
        return FERDataset(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                          np.concatenate([p.ids for p in parts]), name="all", source=loaded.source,
                          synthetic=loaded.synthetic, classes=parts[0].classes,
                          originals=None if all(p.originals is None for p in parts) else np.concatenate(
                              [p.originals if p.originals is not None else np.full(len(p), "") for p in parts]))
    if split not in SPLIT_ORDER:
        raise DataError(f"unknown split {split!r} (use 'auto', 'all' or one of {', '.join(SPLIT_ORDER)})")
    if loaded.get(split) is None:
        raise DataError(f"{loaded.source}: no '{split}' split (the data has: {', '.join(loaded.splits)}; "
                        "use split 'all' to evaluate the whole data set)")
    return loaded[split]


def calibration_split(dataset: FERDataset, size: int | float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Carve a calibration part out of an evaluation set: (evaluation indices, calibration indices), disjoint,
    both sorted, together every index once. ``size``: a number of images (int >= 1) or a fraction (0 < f < 1).

    Stratified: each class gives its share (largest-remainder rounding of size * n_c / N), but a class with
    two or more images always keeps at least one for evaluation. Seeded and order-independent like
    ``stratified_split`` (images are ranked by sha256(f"{seed}:{id}")), so the same data and seed give the
    same parts on any machine, whatever the order the data was read in."""
    n = len(dataset)
    if isinstance(size, float) and not isinstance(size, bool):
        if not 0.0 < size < 1.0:
            raise DataError(f"calibration fraction must be between 0 and 1 (exclusive), got {size}")
        size = int(np.floor(n * size + 0.5))
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size < n:
        raise DataError(f"calibration size must be an image count from 1 to {n - 1} (the evaluation set has {n} "
                        f"images) or a fraction, got {size!r}")
    labels = dataset.labels
    counts = np.bincount(labels, minlength=len(dataset.classes))
    exact = size * counts / n
    quota = np.floor(exact).astype(np.int64)
    quota[np.argsort(-(exact - quota), kind="stable")[: size - int(quota.sum())]] += 1
    quota = np.minimum(quota, np.where(counts >= 2, counts - 1, counts))  # every class stays evaluable
    keys = np.array([hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in dataset.ids])
    calib = [members[np.argsort(keys[members], kind="stable")[:take]]
             for label, take in enumerate(quota) if take
             for members in [np.flatnonzero(labels == label)]]
    calib_idx = np.sort(np.concatenate(calib)) if calib else np.zeros(0, np.int64)
    keep = np.ones(n, bool)
    keep[calib_idx] = False
    return np.flatnonzero(keep), calib_idx
