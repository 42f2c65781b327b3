"""The INT8 calibration set: a seeded, stratified subset of the training split, saved as a portable bundle.

A bundle is a directory with ``calib.npz`` (raw 48x48 uint8 ``images``, int64 ``labels``, str ``ids``) and
``manifest.json`` (strategy, seed, per-class counts, source ids, data fingerprint). Both files are
byte-identical for the same data, size, strategy, seed and floor, so a manifest published for the official
FER2013 file lets anyone with ``fer2013.csv`` redraw exactly the same subset. numpy + stdlib only.
"""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.sampling import balanced_quota, stratified_quota
from ..errors import ExportError
from ..fileio import atomic_path, read_json, write_json
from ..preprocess import prepare
from ..spec import FER2013_LABELS, ModelSpec
from .config import DEFAULT_FLOOR, DEFAULT_SIZE, STRATEGIES

FORMAT = "edgefer-calibration/1"
NPZ_NAME = "calib.npz"
MANIFEST_NAME = "manifest.json"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed zip entry time: the same content gives the same bytes


class CalibrationWarning(UserWarning):
    """A class has fewer training images than the calibration floor (or none at all)."""


@dataclass
class CalibrationSet:
    """Calibration images (uint8, N x H x W), their labels and source ids, and the manifest that describes them."""

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    manifest: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def synthetic(self) -> bool:
        return bool(self.manifest.get("synthetic", False))

    def batches(self, spec: ModelSpec, batch_size: int = 32) -> Batches:
        """Re-iterable float32 batches for ``spec`` (made with ``edgefer.preprocess.prepare``), in the model's
        layout (NHWC when ``spec.layout`` says so) and of the model's fixed batch (``spec.batch``) when it has one
        (the last batch then repeats images to fill it)."""
        return Batches(self.images, spec, batch_size)

    def save(self, directory: str | Path) -> Path:
        """Write ``calib.npz`` and ``manifest.json`` into ``directory`` (atomically, deterministically)."""
        directory = Path(directory)
        with atomic_path(directory / NPZ_NAME) as tmp:
            tmp.write_bytes(_npz_bytes(images=self.images, labels=self.labels, ids=self.ids))
        write_json(directory / MANIFEST_NAME, self.manifest)
        return directory

    @classmethod
    def load(cls, path: str | Path) -> CalibrationSet:
        """Load a bundle from its directory, its ``calib.npz`` or its ``manifest.json``; verify the content hash."""
        path = Path(path)
        if not path.exists():
            raise ExportError(f"--calib {path}: no such calibration bundle; make one with edgefer calibrate")
        directory = path if path.is_dir() else path.parent
        npz_path, manifest_path = directory / NPZ_NAME, directory / MANIFEST_NAME
        for p in (npz_path, manifest_path):
            if not p.is_file():
                raise ExportError(f"{path}: not a calibration bundle (missing {p.name}); make one with edgefer calibrate")
        manifest = read_json(manifest_path, ExportError)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ExportError(f"{manifest_path}: field 'format' is not {FORMAT!r}")
        import zlib

        unreadable = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)
        try:
            loaded = np.load(npz_path, allow_pickle=False)
        except unreadable as exc:  # an empty file is EOFError (which click would turn into "Aborted!")
            raise ExportError(f"{npz_path}: cannot read calibration arrays ({exc or type(exc).__name__})") from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ExportError(f"{npz_path}: one array saved with np.save, not an .npz archive of images, labels and "
                              "ids; make the bundle with edgefer calibrate")
        try:
            with loaded as npz:
                images, labels, ids = npz["images"], npz["labels"], npz["ids"]
        except unreadable as exc:
            raise ExportError(f"{npz_path}: cannot read calibration arrays ({exc or type(exc).__name__})") from None
        if (images.dtype != np.uint8 or images.ndim != 3 or labels.ndim != 1 or ids.ndim != 1
                or len(labels) != len(images) or len(ids) != len(images)):
            raise ExportError(f"{npz_path}: expected uint8 images (N, H, W) with N labels and ids, got "
                              f"images {images.dtype} {images.shape}, labels {labels.shape}, ids {ids.shape}")
        if not np.issubdtype(labels.dtype, np.integer) or not (np.issubdtype(ids.dtype, np.str_) or
                                                               np.issubdtype(ids.dtype, np.bytes_)):
            raise ExportError(f"{npz_path}: labels must be integers and ids strings, got {labels.dtype} and "
                              f"{ids.dtype}")
        digest = content_sha256(images, labels)
        if digest != manifest.get("content_sha256"):
            raise ExportError(f"{npz_path}: content does not match {manifest_path.name} (field 'content_sha256')")
        return cls(images, labels.astype(np.int64), ids.astype(str), manifest)


class Batches:
    """A re-iterable sequence of prepared batches: every INT8 calibration step can consume it again."""

    def __init__(self, images: np.ndarray, spec: ModelSpec, batch_size: int):
        if batch_size < 1:
            raise ExportError(f"calibration batch size must be >= 1, got {batch_size}")
        fixed = getattr(spec, "batch", None)
        self.images, self.spec, self.batch_size = images, spec, int(fixed or batch_size)
        self.fixed = fixed is not None

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __iter__(self):
        nhwc = getattr(self.spec, "layout", None) == "nhwc"
        for start in range(0, len(self.images), self.batch_size):
            chunk = self.images[start : start + self.batch_size]
            if self.fixed and len(chunk) < self.batch_size:
                chunk = self.images[np.arange(start, start + self.batch_size) % len(self.images)]
            x = prepare(chunk, self.spec, color="gray")
            yield np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x


def draw(
    dataset,
    size: int = DEFAULT_SIZE,
    strategy: str = "stratified",
    seed: int = 0,
    floor: int = DEFAULT_FLOOR,
    *,
    labels=FER2013_LABELS,
    fingerprint: str | None = None,
    synthetic: bool | None = None,
) -> CalibrationSet:
    """Draw ``size`` images from ``dataset`` (the training split: ``.images``, ``.labels``, ``.ids``).

    ``stratified``: per-class proportional, but at least ``floor`` images of every class that has them;
    ``balanced``: as equal per class as the data allows; ``random``: uniform without replacement.
    Warns (``CalibrationWarning``, also listed in the manifest) about classes with fewer than ``floor`` images.
    """
    if strategy not in STRATEGIES:
        raise ExportError(f"calibration strategy {strategy!r} is not supported; use one of {', '.join(STRATEGIES)}")
    if size < 1 or floor < 0:
        raise ExportError(f"calibration size must be >= 1 and floor >= 0, got size={size}, floor={floor}")
    all_labels = np.asarray(dataset.labels, np.int64)
    if len(all_labels) == 0:
        raise ExportError(f"{getattr(dataset, 'source', 'dataset')}: no images to draw a calibration set from")
    counts = np.bincount(all_labels, minlength=len(labels))[: len(labels)]
    n = min(int(size), len(all_labels))
    rng = np.random.default_rng(seed)
    if strategy == "random":
        chosen = np.sort(rng.choice(len(all_labels), n, replace=False))
    else:
        quota = stratified_quota(counts, n, floor) if strategy == "stratified" else balanced_quota(counts, n)
        chosen = np.sort(np.concatenate([
            rng.permutation(np.flatnonzero(all_labels == k))[: quota[k]] for k in range(len(labels))
        ]).astype(np.int64))
    notes = _floor_warnings(counts, labels, floor)
    for note in notes:
        warnings.warn(note, CalibrationWarning, stacklevel=2)
    images = np.ascontiguousarray(np.asarray(dataset.images)[chosen], dtype=np.uint8)
    chosen_labels, ids = all_labels[chosen], np.asarray(dataset.ids).astype(str)[chosen]
    if synthetic is None:
        synthetic = bool(getattr(dataset, "synthetic", False))
    manifest = {
        "format": FORMAT,
        "strategy": strategy,
        "seed": int(seed),
        "size": int(n),
        "requested_size": int(size),
        "floor": int(floor),
        "labels": list(labels),
        "per_class": {name: int(c) for name, c in zip(labels, np.bincount(chosen_labels, minlength=len(labels)))},
        "source_per_class": {name: int(c) for name, c in zip(labels, counts)},
        "source": Path(str(getattr(dataset, "source", "") or "")).name,
        "split": str(getattr(dataset, "name", "train")),
        "data_fingerprint": fingerprint or content_sha256(dataset.images, all_labels),
        "content_sha256": content_sha256(images, chosen_labels),
        "image_shape": list(images.shape[1:]),
        "synthetic": bool(synthetic),
        "warnings": notes,
        "ids": ids.tolist(),
    }
    return CalibrationSet(images, chosen_labels, ids, manifest)


def from_data(
    data,
    size: int = DEFAULT_SIZE,
    strategy: str = "stratified",
    seed: int = 0,
    floor: int = DEFAULT_FLOOR,
    *,
    val_fraction: float = 0.1,
    split_seed: int = 0,
) -> CalibrationSet:
    """Draw from the training split of ``data`` (a path for ``edgefer.data.prepare_splits`` or its ``Splits``),
    recording the split settings and the data fingerprint, so the manifest pins down the exact subset."""
    from ..data import prepare_splits

    splits = data if hasattr(data, "train") else prepare_splits(data, val_fraction=val_fraction, seed=split_seed)
    calib = draw(splits.train, size, strategy, seed, floor, fingerprint=splits.fingerprint,
                 synthetic=splits.synthetic)
    split_manifest = getattr(splits, "manifest", {}) or {}
    calib.manifest["split"] = {"val_fraction": split_manifest.get("val_fraction", val_fraction),
                               "seed": split_manifest.get("seed", split_seed),
                               "val_from": split_manifest.get("val_from", "")}
    calib.manifest["source"] = Path(str(getattr(splits, "source", "") or calib.manifest["source"])).name
    return calib


def from_labelled(data, size: int = DEFAULT_SIZE, strategy: str = "stratified", seed: int = 0,
                  floor: int = DEFAULT_FLOOR) -> CalibrationSet:
    """Draw from a whole labelled data set (``--calib-data PATH``: any FER2013 CSV or image folder, with or
    without splits, or an ``edgefer.data`` data set), not only its training split."""
    from ..data import evaluation_set

    dataset = data if hasattr(data, "images") else evaluation_set(data, "all")
    calib = draw(dataset, size, strategy, seed, floor, labels=tuple(getattr(dataset, "classes", FER2013_LABELS)),
                 synthetic=bool(getattr(dataset, "synthetic", False)))
    calib.manifest["source"] = Path(str(getattr(dataset, "source", "") or calib.manifest["source"])).name
    return calib


def content_sha256(images, labels) -> str:
    """Hash of uint8 images and int64 labels (shape included): identifies a calibration set or a split."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    digest = hashlib.sha256(str(images.shape).encode())
    digest.update(images.tobytes())
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return digest.hexdigest()


def _floor_warnings(counts: np.ndarray, labels, floor: int) -> list[str]:
    short = [f"{name} ({int(c)})" for name, c in zip(labels, counts) if c < floor]
    if not short:
        return []
    return [f"calibration: {len(short)} class(es) have fewer than the floor of {floor} training images, "
            f"so the calibration set under-represents them: {', '.join(short)}"]


def _npz_bytes(**arrays) -> bytes:
    """An .npz archive with fixed entry times, so equal arrays give equal bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as entry:
                np.lib.format.write_array(entry, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


BOTH_SOURCES = "give either --calib BUNDLE or --calib-data PATH, not both"


def refuse_both(bundle, labelled) -> None:
    """One calibration source at most: ``--calib BUNDLE`` or ``--calib-data PATH``."""
    if bundle is not None and labelled is not None:
        raise ExportError(BOTH_SOURCES)


@dataclass
class Resolved:
    """What ``resolve`` chose: the calibration set (None without a source), how it was made (``"bundle"``,
    ``"labelled"``, ``"split"``, ``"carved"`` or ``"none"``), and the labelled data set without the carved part
    (``whole`` as given unless ``how == "carved"``)."""

    calib: CalibrationSet | None
    how: str
    rest: object = None


def resolve(options, *, bundle=None, labelled=None, splits=None, whole=None) -> Resolved:
    """The INT8 calibration set, one rule for ``edgefer export``, ``edgefer bench`` and ``export()``. The first
    source given is used: ``bundle`` (``--calib``: a ``CalibrationSet``, or a bundle directory or manifest to
    load), ``labelled`` (``--calib-data``: labelled data drawn whole, ``from_labelled``), ``splits`` (data with a
    training split: drawn from that split, ``from_data``), ``whole`` (a labelled data set without one: a disjoint
    stratified part of it is carved off and drawn; ``Resolved.rest`` is the data set without it). ``options``
    (``config.CalibOptions``) gives size, strategy, seed and floor."""
    refuse_both(bundle, labelled)
    c = options
    if bundle is not None:
        return Resolved(bundle if isinstance(bundle, CalibrationSet) else CalibrationSet.load(bundle), "bundle", whole)
    if labelled is not None:
        return Resolved(from_labelled(labelled, c.size, c.strategy, c.seed, c.floor), "labelled", whole)
    if splits is not None:
        return Resolved(from_data(splits, c.size, c.strategy, c.seed, c.floor), "split", whole)
    if whole is not None:
        from ..data import calibration_split

        keep, part = calibration_split(whole, min(c.size, len(whole) // 2), seed=c.seed)
        calib = draw(whole.subset(part), c.size, c.strategy, c.seed, 0,  # the part is stratified: all of it
                     labels=tuple(whole.classes), synthetic=whole.synthetic)
        return Resolved(calib, "carved", whole.subset(keep))
    return Resolved(None, "none", None)
