"""Readers for FER2013 as users have it: the original ``fer2013.csv`` (with or without a Usage column),
``train/<class>/*.png`` + ``test/<class>/...`` folders, and any class-per-folder directory whose class names
are spelled differently ("anger", "happiness", "surprised", ...).

Every bad row or file either raises ``DataError`` naming the file and row/path, or (``skip_bad=True``) is
skipped and recorded in the ``Report``: nothing is dropped silently. Pillow is imported only for images.
"""

from __future__ import annotations

import csv
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, require
from ..progress import progress
from ..spec import FER2013_LABELS
from .dataset import IMAGE_SIZE, NUM_CLASSES, FERDataset

PIXELS_PER_IMAGE = IMAGE_SIZE * IMAGE_SIZE

# FER2013 "Usage" values and folder names -> split names
USAGE_SPLITS = {"training": "train", "publictest": "test", "privatetest": "private_test"}
FOLDER_SPLITS = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test", "publictest": "test",
    "privatetest": "private_test",
}
SPLIT_ORDER = ("train", "val", "test", "private_test")

# Spellings of the 7 FER2013 classes met in other data sets (keys: lower case, letters only).
CLASS_ALIASES = {
    "angry": ("angry", "anger", "angered", "mad", "furious", "rage"),
    "disgust": ("disgust", "disgusted", "disgusting", "disgustful"),
    "fear": ("fear", "fearful", "fearfulness", "afraid", "scared", "fright", "frightened"),
    "happy": ("happy", "happiness", "happyness", "joy", "joyful", "smile", "smiling", "glad"),
    "sad": ("sad", "sadness", "sorrow", "unhappy"),
    "surprise": ("surprise", "surprised", "surprising", "suprise", "suprised", "surprize", "amazed",
                 "astonished"),
    "neutral": ("neutral", "neutrality", "neutralness"),
}
_ALIAS_TO_INDEX = {alias: FER2013_LABELS.index(label) for label, aliases in CLASS_ALIASES.items() for alias in aliases}

CSV_COLUMNS = {"emotion": ("emotion", "label"), "pixels": ("pixels",), "usage": ("usage",)}
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip", ".gz", ".7z", ".rar")
SYNTHETIC_SIDECAR_SUFFIX = ".synthetic.json"
SYNTHETIC_DIR_MARKER = "synthetic.json"


def canonical_label(name: str) -> int | None:
    """FER2013 class index for a class name in any common spelling ("Anger", "3_happy", "surprised", "4"),
    or None when the name is not one of the 7 classes. A bare number is taken as the FER2013 index."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    if key.isdigit():
        return int(key) if int(key) < NUM_CLASSES else None
    return _ALIAS_TO_INDEX.get(re.sub(r"^[0-9]+", "", key))


def synthetic_marker(path: str | Path) -> Path:
    """Where the "this data is synthetic" marker of a CSV file or an image directory lives."""
    path = Path(path)
    return path / SYNTHETIC_DIR_MARKER if path.is_dir() else path.with_name(path.name + SYNTHETIC_SIDECAR_SUFFIX)


def is_synthetic(path: str | Path) -> bool:
    """True for data written by ``edgefer data synth`` (marker file beside it, or "synthetic" in its name)."""
    path = Path(path)
    return synthetic_marker(path).exists() or "synthetic" in path.name.lower()


@dataclass
class Report:
    """Bad rows and files met while reading; with ``strict`` the first one raises ``DataError``."""

    strict: bool = True
    skipped: list = field(default_factory=list)  # {"file", "where", "reason"}

    def bad(self, file: str | Path, where: str, reason: str) -> None:
        location = f"{file} {where}" if where else str(file)
        if self.strict:
            raise DataError(f"{location}: {reason} (use --skip-bad / skip_bad=True to skip bad input)")
        self.skipped.append({"file": str(file), "where": where, "reason": reason})

    def __len__(self) -> int:
        return len(self.skipped)

    def per_file(self) -> dict:
        counts: dict = {}
        for entry in self.skipped:
            counts[entry["file"]] = counts.get(entry["file"], 0) + 1
        return counts

    def to_dict(self) -> dict:
        return {"skipped": len(self.skipped), "per_file": self.per_file(), "entries": list(self.skipped)}


@dataclass
class Loaded:
    """What ``load`` read: the splits found in the data, the bad-input report and provenance."""

    splits: dict
    report: Report
    source: str
    format: str  # "csv", "split-folders" or "class-folders"
    synthetic: bool = False

    def get(self, name: str) -> FERDataset | None:
        return self.splits.get(name)

    def __getitem__(self, name: str) -> FERDataset:
        return self.splits[name]


def load(path: str | Path, skip_bad: bool = False) -> Loaded:
    """Read FER2013 data from a CSV file, a split-folder root, a class-folder root, or a directory that
    holds exactly one CSV file. Split names: ``train``, ``val`` (folder layouts only), ``test``,
    ``private_test``; data without split information is all ``train``."""
    path = Path(path)
    report = Report(strict=not skip_bad)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_file():
        if path.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise DataError(f"{path}: is an archive; extract it first (e.g. tar xzf / unzip) and pass the "
                            "fer2013.csv or image folder inside")
        splits, fmt = read_fer_csv(path, report), "csv"
    else:
        layout = _folder_layout(path)
        if layout == "csv":
            return load(_single_csv(path), skip_bad)
        splits, fmt = read_image_folders(path, layout, report), layout
    splits = {name: splits[name] for name in SPLIT_ORDER if name in splits and len(splits[name])}
    if not splits:
        raise DataError(f"{path}: no usable images ({len(report)} bad rows/files skipped)")
    synthetic = is_synthetic(path)
    for dataset in splits.values():
        dataset.synthetic = synthetic
    return Loaded(splits, report, str(path), fmt, synthetic)


# ---------------------------------------------------------------------------------------------- CSV


def read_fer_csv(path: str | Path, report: Report | None = None) -> dict:
    """Read a FER2013 CSV (``emotion,pixels[,Usage]``, any column order, header required) into splits.
    Source ids are ``<file name>:row=<n>`` with n the 1-based data row (header not counted)."""
    path = Path(path)
    report = Report() if report is None else report
    capacity = max(_count_lines(path) - 1, 0)  # every data row takes at least one line
    images = np.empty((capacity, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    labels = np.empty(capacity, np.int64)
    split_codes = np.empty(capacity, np.int8)
    rows = np.empty(capacity, np.int64)
    n = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            columns = _csv_columns(path, next(reader, None))
            width = len(columns["header"])
            row = 0
            for fields in progress(reader, total=capacity, desc=f"reading {path.name}"):
                if not fields or fields == [""]:
                    continue  # blank line: not a data row
                row += 1
                where = f"row {row} (line {reader.line_num})"
                if len(fields) != width:
                    report.bad(path, where, f"expected {width} fields ({','.join(columns['header'])}), got {len(fields)}")
                    continue
                label = _parse_label(fields[columns["emotion"]])
                if isinstance(label, str):
                    report.bad(path, where, label)
                    continue
                split = "train"
                if columns["usage"] is not None:
                    usage = fields[columns["usage"]].strip()
                    split = USAGE_SPLITS.get(usage.lower())
                    if split is None:
                        report.bad(path, where, f"Usage {usage!r} is not Training, PublicTest or PrivateTest")
                        continue
                pixels = _parse_pixels(fields[columns["pixels"]])
                if isinstance(pixels, str):
                    report.bad(path, where, pixels)
                    continue
                images[n] = pixels.reshape(IMAGE_SIZE, IMAGE_SIZE)
                labels[n], split_codes[n], rows[n] = label, SPLIT_ORDER.index(split), row
                n += 1
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text CSV file (not UTF-8: {exc.reason})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV: {exc}") from None
    ids = np.array([f"{path.name}:row={r}" for r in rows[:n]])
    return _split_by_code(images[:n], labels[:n], ids, split_codes[:n], source=str(path))


def _count_lines(path: Path) -> int:
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def _csv_columns(path: Path, header: list | None) -> dict:
    if header is None:
        raise DataError(f"{path}: empty file (expected a header 'emotion,pixels,Usage')")
    names = [name.strip().lower() for name in header]
    columns: dict = {"header": [name.strip() for name in header]}
    for column, aliases in CSV_COLUMNS.items():
        found = [i for i, name in enumerate(names) if name in aliases]
        columns[column] = found[0] if found else None
        if column != "usage" and not found:
            raise DataError(f"{path}: missing column '{column}' (header line 1: {','.join(header)!r}; "
                            "expected 'emotion,pixels' and optionally 'Usage')")
    return columns


def _parse_label(text: str) -> int | str:
    """The class index, or the reason it is bad."""
    try:
        label = int(text.strip())
    except ValueError:
        return f"emotion {text.strip()!r} is not an integer label 0..{NUM_CLASSES - 1}"
    if not 0 <= label < NUM_CLASSES:
        return f"emotion {label} is outside 0..{NUM_CLASSES - 1}"
    return label


def _parse_pixels(text: str) -> np.ndarray | str:
    """2304 integers 0..255 from a space-separated string, or the reason they are bad."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # numpy < 2.3 warns instead of raising
            values = np.fromstring(text, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        tokens = text.split()
        for i, token in enumerate(tokens, 1):
            if not re.fullmatch(r"[+-]?[0-9]+", token):
                return f"pixel {i} {token[:20]!r} is not an integer"
        values = np.array([int(token) for token in tokens], dtype=np.int64)
    if values.size != PIXELS_PER_IMAGE:
        return f"expected {PIXELS_PER_IMAGE} pixel values (48x48), got {values.size}"
    out_of_range = np.flatnonzero((values < 0) | (values > 255))
    if out_of_range.size:
        i = int(out_of_range[0])
        return f"pixel {i + 1} value {int(values[i])} is outside 0..255"
    return values.astype(np.uint8)


def _split_by_code(images, labels, ids, codes, source: str) -> dict:
    """Datasets per split; a split stored as one run of rows (as in fer2013.csv) is a view, not a copy."""
    splits = {}
    for code, name in enumerate(SPLIT_ORDER):
        rows = np.flatnonzero(codes == code)
        if rows.size == 0:
            continue
        if rows[-1] - rows[0] + 1 == rows.size:
            pick = slice(int(rows[0]), int(rows[-1]) + 1)
        else:
            pick = rows
        splits[name] = FERDataset(images[pick], labels[pick], ids[pick], name=name, source=source)
    return splits


# ------------------------------------------------------------------------------------------ folders


def _visible(path: Path) -> bool:
    """Hidden files and folders (".DS_Store", ".git") and macOS zip debris ("__MACOSX") are not data."""
    return not (path.name.startswith(".") or path.name == "__MACOSX")


def _folder_layout(root: Path) -> str:
    """'split-folders' (train/, test/...), 'class-folders' (angry/, happy/...) or 'csv'."""
    subdirs = [p for p in root.iterdir() if p.is_dir() and _visible(p)]
    if any(_split_name(p.name) for p in subdirs):
        return "split-folders"
    if any(canonical_label(p.name) is not None for p in subdirs):
        return "class-folders"
    if list(root.glob("*.csv")):
        return "csv"
    names = ", ".join(sorted(p.name for p in subdirs)) or "none"
    raise DataError(f"{root}: no FER2013 CSV, split folders (train/, test/) or class folders "
                    f"({', '.join(FER2013_LABELS)}) found (sub-folders: {names})")


def _single_csv(root: Path) -> Path:
    found = sorted(root.glob("*.csv"))
    if len(found) > 1:
        raise DataError(f"{root}: holds {len(found)} CSV files ({', '.join(p.name for p in found)}); pass one of them")
    return found[0]


def _split_name(name: str) -> str | None:
    return FOLDER_SPLITS.get(re.sub(r"[^a-z]", "", name.lower()))


def read_image_folders(root: str | Path, layout: str, report: Report | None = None) -> dict:
    """Read ``root/<split>/<class>/**`` ('split-folders') or ``root/<class>/**`` ('class-folders', all
    ``train``). Any image size, gray or colour, becomes 48x48 gray (see ``to_gray48``). Source ids are
    paths relative to ``root``. Hidden files and folders (".DS_Store") and files directly in ``root`` are
    ignored."""
    root = Path(root)
    report = Report() if report is None else report
    if layout == "class-folders":
        split_dirs = {"train": [root]}
    else:
        split_dirs = {}
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p)):
            split = _split_name(sub.name)
            if split is None:
                report.bad(sub, "", f"folder '{sub.name}' is not a split (expected {', '.join(sorted(FOLDER_SPLITS))})")
            else:
                split_dirs.setdefault(split, []).append(sub)
    files, labels, splits = [], [], []
    for split, dirs in split_dirs.items():
        for split_dir in dirs:
            for path, label in _class_files(split_dir, report, top_level=split_dir == root):
                files.append(path)
                labels.append(label)
                splits.append(SPLIT_ORDER.index(split))
    pil = require("PIL.Image", "data", "reading image folders") if files else None
    images = np.empty((len(files), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    keep = np.ones(len(files), bool)
    for i, path in enumerate(progress(files, total=len(files), desc=f"reading {root.name}/")):
        image = _read_image(pil, path, report)
        if image is None:
            keep[i] = False
        else:
            images[i] = image
    ids = np.array([p.relative_to(root).as_posix() for p in files], dtype=str)
    codes = np.array(splits, dtype=np.int8)
    if not keep.all():
        images, ids, codes = images[keep], ids[keep], codes[keep]
        labels = np.asarray(labels)[keep]
    return _split_by_code(images, np.asarray(labels, dtype=np.int64), ids, codes, source=str(root))


def _class_files(split_dir: Path, report: Report, top_level: bool):
    """(file, label) for every visible file under the class folders of ``split_dir``, sorted."""
    entries = sorted(p for p in split_dir.iterdir() if _visible(p))
    class_dirs = [p for p in entries if p.is_dir()]
    if not class_dirs:
        report.bad(split_dir, "", "no class folders inside (expected e.g. angry/, happy/ ...)")
    for stray in (p for p in entries if not p.is_dir()):
        if not top_level:  # files at the data root (README, CSV) are not data
            report.bad(stray, "", "file outside a class folder")
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.rglob("*")
                       if p.is_file() and all(_visible(Path(part)) for part in p.relative_to(class_dir).parts))
        label = canonical_label(class_dir.name)
        if label is None:
            report.bad(class_dir, "", f"unknown class name '{class_dir.name}' ({len(files)} files; expected one "
                                      f"of {', '.join(FER2013_LABELS)} or a common alias such as anger, happiness)")
            continue
        if not files:
            report.bad(class_dir, "", "empty class folder")
            continue
        yield from ((path, label) for path in files)


def _read_image(pil, path: Path, report: Report) -> np.ndarray | None:
    try:
        with pil.open(path) as image:
            return to_gray48(image)
    except (pil.UnidentifiedImageError, pil.DecompressionBombError) as exc:
        report.bad(path, "", f"not a readable image ({type(exc).__name__})")
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow raises these for truncated/corrupt files
        report.bad(path, "", f"not a readable image ({exc})")
    return None


def to_gray48(image) -> np.ndarray:
    """A Pillow image as 48x48 uint8 gray: EXIF rotation applied, 16-bit scaled to 8-bit, colour converted
    with Pillow's ITU-R 601 luma (L = 0.299 R + 0.587 G + 0.114 B), then the centred square crop resized to
    48x48: area averaging (Pillow BOX, like OpenCV INTER_AREA) when shrinking, bilinear when enlarging,
    untouched when already 48x48."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16"):
        image = Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8))
    gray = image.convert("L")
    width, height = gray.size
    if (width, height) != (IMAGE_SIZE, IMAGE_SIZE):
        side = min(width, height)
        box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
        shrink = side > IMAGE_SIZE
        gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR,
                           box=box)
    return np.asarray(gray, dtype=np.uint8)
