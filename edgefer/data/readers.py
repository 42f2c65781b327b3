"""Readers for FER2013 as users have it: the original ``fer2013.csv`` (with or without a Usage column),
``train/<class>/*.png`` + ``test/<class>/...`` folders, and any class-per-folder directory whose class names
are spelled differently ("anger", "happiness", "surprised", ...).

Every bad row or file either raises ``DataError`` naming the file and row/path, or (``skip_bad=True``) is
skipped and recorded in the ``Report``: nothing is dropped silently. Pillow is imported only for images.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, require
from ..labels import CLASS_ALIASES, KNOWN_LABELS, canonical_label, label_index  # noqa: F401 - re-exported
from ..progress import progress
from ..spec import FER2013_LABELS
from .dataset import IMAGE_SIZE, NUM_CLASSES, FERDataset
from .images import printable, read_face, square_crop  # noqa: F401 - read_face re-exported

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
# Kaggle's image-folder FER2013 keeps PublicTest and PrivateTest in one test/ folder; the file names tell them apart
TEST_PREFIXES = {"publictest": "test", "privatetest": "private_test"}

CSV_COLUMNS = {"emotion": ("emotion", "label"), "pixels": ("pixels",), "usage": ("usage",)}
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip", ".gz", ".7z", ".rar")
SYNTHETIC_SIDECAR_SUFFIX = ".synthetic.json"
SYNTHETIC_DIR_MARKER = "synthetic.json"


def _short(text: str, limit: int = 20) -> str:
    """``repr`` of at most ``limit`` characters of a field, for messages (a field can be 100 kB long)."""
    return repr(printable(text[:limit]) + ("..." if len(text) > limit else ""))


def synthetic_marker(path: str | Path) -> Path:
    """Where the "this data is synthetic" marker of a CSV file or an image directory lives."""
    path = Path(path)
    return path / SYNTHETIC_DIR_MARKER if path.is_dir() else path.with_name(path.name + SYNTHETIC_SIDECAR_SUFFIX)


# how long `data inspect fifo` waits for a writer to a named pipe before it says so (instead of hanging)
FIFO_WAIT_S = 10.0


def read_stream_once(path: str | Path) -> bytes | None:
    """The whole content of ``path`` when it is a pipe or FIFO (``<(zcat fer2013.csv.gz)``, ``mkfifo``), read
    once, since a stream cannot be read twice; ``None`` for a regular file. A FIFO that nothing writes to
    within ``FIFO_WAIT_S`` seconds, a device and a socket are ``DataError``."""
    import select

    path = Path(path)
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    if not stat.S_ISFIFO(mode):
        kind = "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise DataError(f"{printable(path)}: is {kind}, not a data file (give a CSV file or an image folder)")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO without a writer would block forever
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(int(FIFO_WAIT_S * 1000)):
            raise DataError(f"{printable(path)}: is a FIFO (named pipe) that nothing wrote to in {FIFO_WAIT_S:g} s; "
                            "start its writer first, or give a regular file")
        os.set_blocking(fd, True)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def check_synthetic_marker(path: str | Path, content: bytes | None = None) -> None:
    """A CSV's ``.synthetic.json`` marker must name this CSV (its sha256): a CSV replaced after ``data synth``
    wrote the marker, or a write cut between the two, is a ``DataError`` rather than data silently labelled
    synthetic (or not). ``content``: the CSV's bytes when already read (a stream)."""
    path = Path(path)
    marker = synthetic_marker(path)
    if path.is_dir() or not marker.is_file():
        return
    import json

    try:
        recorded = json.loads(marker.read_text(encoding="utf-8")).get("csv_sha256")
    except (ValueError, UnicodeDecodeError, AttributeError):
        raise DataError(f"{printable(marker)}: synthetic-data marker of {printable(path.name)} is not a JSON "
                        "object; delete it, or write the data again with `edgefer data synth`") from None
    if recorded is None:
        return  # a marker from before markers named their CSV
    digest = hashlib.sha256(content).hexdigest() if content is not None else _sha256(path)
    if digest != recorded:
        raise DataError(f"{printable(path)}: does not match its synthetic-data marker {printable(marker.name)} "
                        "(sha256 differs: the CSV was replaced, or writing it was cut short); write it again with "
                        "`edgefer data synth --exist-ok`, or delete the marker if the CSV is not synthetic")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


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
        file, reason = printable(file), printable(reason)
        location = f"{file} {where}" if where else file
        if self.strict:
            raise DataError(f"{location}: {reason} (use --skip-bad / skip_bad=True to skip bad input)")
        self.skipped.append({"file": file, "where": where, "reason": reason})

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
    test_split: str = ""  # how the test splits were told apart (folders: file-name prefixes or one test folder)

    @property
    def classes(self) -> tuple:
        """The class names of the label indices (FER2013's 7, plus e.g. contempt when the data has it)."""
        return next(iter(self.splits.values())).classes

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
        what = "broken symlink" if path.is_symlink() else "no such file or directory"
        raise DataError(f"{printable(path)}: {what}")
    try:
        if not path.is_dir():
            if path.name.lower().endswith(ARCHIVE_SUFFIXES):
                raise DataError(f"{printable(path)}: is an archive; extract it first (e.g. tar xzf / unzip) and "
                                "pass the fer2013.csv or image folder inside")
            content = read_stream_once(path)  # a pipe or FIFO: its bytes, read once; a regular file: None
            check_synthetic_marker(path, content)
            splits, fmt = read_fer_csv(path, report, content), "csv"
            test_split = "Usage column" if "test" in splits or "private_test" in splits else ""
        else:
            layout = _folder_layout(path)
            if layout == "csv":
                return load(_single_csv(path), skip_bad)
            notes: dict = {}
            splits, fmt = read_image_folders(path, layout, report, notes), layout
            test_split = notes.get("test_split", "")
    except OSError as exc:  # unreadable file or folder (permissions, I/O error)
        raise DataError(f"{printable(exc.filename or path)}: cannot read ({exc.strerror or exc})") from None
    splits = {name: splits[name] for name in SPLIT_ORDER if name in splits and len(splits[name])}
    if not splits:
        raise DataError(f"{printable(path)}: no usable images ({len(report)} bad rows/files skipped)")
    synthetic = is_synthetic(path)
    for dataset in splits.values():
        dataset.synthetic = synthetic
    return Loaded(splits, report, printable(path), fmt, synthetic, test_split)


# ---------------------------------------------------------------------------------------------- CSV


def read_fer_csv(path: str | Path, report: Report | None = None, content: bytes | None = None) -> dict:
    """Read a FER2013 CSV (``emotion,pixels[,Usage]``, any column order, header required) into splits.
    Source ids are ``<file name>:row=<n>`` with n the 1-based data row (header not counted). ``content``: the
    file's bytes when it was read already (a pipe), else it is read from ``path``."""
    import io

    path = Path(path)
    report = Report() if report is None else report
    capacity = max(_count_lines(path, content) - 1, 1)  # every data row takes at least one line (grown if not)
    images = np.empty((capacity, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    labels = np.empty(capacity, np.int64)
    split_codes = np.empty(capacity, np.int8)
    rows = np.empty(capacity, np.int64)
    n = 0
    try:
        opened = (open(path, newline="", encoding="utf-8-sig") if content is None else
                  io.TextIOWrapper(io.BytesIO(content), newline="", encoding="utf-8-sig"))
        with opened as f:
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
                        report.bad(path, where, f"Usage {_short(usage, 40)} is not Training, PublicTest or PrivateTest")
                        continue
                pixels = _parse_pixels(fields[columns["pixels"]])
                if isinstance(pixels, str):
                    report.bad(path, where, pixels)
                    continue
                if n == capacity:  # cannot happen with \n, \r\n or \r line ends; kept as a guard
                    capacity *= 2
                    images, labels, split_codes, rows = (np.resize(a, (capacity,) + a.shape[1:])
                                                         for a in (images, labels, split_codes, rows))
                images[n] = pixels.reshape(IMAGE_SIZE, IMAGE_SIZE)
                labels[n], split_codes[n], rows[n] = label, SPLIT_ORDER.index(split), row
                n += 1
    except UnicodeDecodeError as exc:
        raise DataError(f"{printable(path)}: not a text CSV file (not UTF-8: {exc.reason})") from None
    except csv.Error as exc:
        raise DataError(f"{printable(path)}: malformed CSV: {exc}") from None
    name = printable(path.name)
    ids = np.array([f"{name}:row={r}" for r in rows[:n]])
    return _split_by_code(images[:n], labels[:n], ids, split_codes[:n], source=printable(path))


def _count_lines(path: Path, content: bytes | None = None) -> int:
    """Lines of a text file (or of ``content``) whose lines end in \\n, \\r\\n or a lone \\r (old Mac), in any mix."""
    import io

    lines, last = 0, b"\n"
    with (open(path, "rb") if content is None else io.BytesIO(content)) as f:
        while block := f.read(1 << 20):
            lines += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
            if last == b"\r" and block[:1] == b"\n":
                lines -= 1  # a \r\n split across two blocks
            last = block[-1:]
    return lines + (last not in (b"\n", b"\r"))


def _csv_columns(path: Path, header: list | None) -> dict:
    if header is None:
        raise DataError(f"{printable(path)}: empty file (expected a header 'emotion,pixels,Usage')")
    header = [printable(name) for name in header]
    names = [name.strip().lower() for name in header]
    columns: dict = {"header": [name.strip() for name in header]}
    for column, aliases in CSV_COLUMNS.items():
        found = [i for i, name in enumerate(names) if name in aliases]
        columns[column] = found[0] if found else None
        if column != "usage" and not found:
            raise DataError(f"{printable(path)}: missing column '{column}' (header line 1: {','.join(header)!r}; "
                            "expected 'emotion,pixels' and optionally 'Usage')")
    return columns


def _parse_label(text: str) -> int | str:
    """The class index, or the reason it is bad."""
    text = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", text):  # ASCII digits only; no "1_0", no 5000-digit numbers
        if re.fullmatch(r"[+-]?[0-9]+", text):
            return f"emotion {_short(text)} is outside 0..{NUM_CLASSES - 1}"
        return f"emotion {_short(text)} is not an integer label 0..{NUM_CLASSES - 1}"
    label = int(text)
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
        tokens = text.split()  # any Unicode white space separates (a non-breaking space from a spreadsheet)
        for i, token in enumerate(tokens, 1):
            if not re.fullmatch(r"[+-]?[0-9]+", token):
                return f"pixel {i} {_short(token)} is not an integer"
            if len(token.lstrip("+-").lstrip("0")) > 3:  # too large for 0..255 (and for int64)
                return f"pixel {i} value {_short(token)[1:-1]} is outside 0..255"
        values = np.array([int(token) for token in tokens], dtype=np.int64)
    if values.size != PIXELS_PER_IMAGE:
        return f"expected {PIXELS_PER_IMAGE} pixel values (48x48), got {values.size}"
    out_of_range = np.flatnonzero((values < 0) | (values > 255))
    if out_of_range.size:
        i = int(out_of_range[0])
        tokens = text.split()  # the text as written: numpy clamps a huge number to the int64 limit
        shown = _short(tokens[i])[1:-1] if len(tokens) == values.size else str(int(values[i]))
        return f"pixel {i + 1} value {shown} is outside 0..255"
    return values.astype(np.uint8)


def _split_by_code(images, labels, ids, codes, source: str, originals: np.ndarray | None = None) -> dict:
    """Datasets per split; a split stored as one run of rows (as in fer2013.csv) is a view, not a copy.
    Every split names the same classes: FER2013's 7, extended when a label beyond them occurs."""
    splits = {}
    classes = KNOWN_LABELS[:max(len(FER2013_LABELS), int(np.max(labels, initial=0)) + 1)]
    for code, name in enumerate(SPLIT_ORDER):
        rows = np.flatnonzero(codes == code)
        if rows.size == 0:
            continue
        if rows[-1] - rows[0] + 1 == rows.size:
            pick = slice(int(rows[0]), int(rows[-1]) + 1)
        else:
            pick = rows
        splits[name] = FERDataset(images[pick], labels[pick], ids[pick], name=name, source=source, classes=classes,
                                  originals=None if originals is None else originals[pick])
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
    if any(label_index(p.name) is not None for p in subdirs):
        return "class-folders"
    if list(root.glob("*.csv")):
        return "csv"
    names = ", ".join(sorted(printable(p.name) for p in subdirs)) or "none"
    raise DataError(f"{printable(root)}: no FER2013 CSV, split folders (train/, test/) or class folders "
                    f"({', '.join(FER2013_LABELS)}) found (sub-folders: {names})")


def _single_csv(root: Path) -> Path:
    found = sorted(root.glob("*.csv"))
    if len(found) > 1:
        raise DataError(f"{printable(root)}: holds {len(found)} CSV files ({', '.join(printable(p.name) for p in found)}); "
                        "pass one of them")
    return found[0]


def _split_name(name: str) -> str | None:
    return FOLDER_SPLITS.get(re.sub(r"[^a-z]", "", name.lower()))


def read_image_folders(root: str | Path, layout: str, report: Report | None = None, notes: dict | None = None) -> dict:
    """Read ``root/<split>/<class>/**`` ('split-folders') or ``root/<class>/**`` ('class-folders', all
    ``train``). Any image size, gray or colour, becomes 48x48 gray (see ``to_gray48``); a file holding more
    (another size or colour) is also named in the data set's ``originals``, so models read it at their own size
    (``FERDataset.faces``). Source ids are
    paths relative to ``root``. Hidden files and folders (".DS_Store") and files directly in ``root`` are
    ignored. A test folder of Kaggle's FER2013 (``PublicTest_*`` and ``PrivateTest_*`` files) gives ``test`` and
    ``private_test``; ``notes["test_split"]`` says how the test splits were found. Each split is in a fixed
    pseudo-random order, not class by class."""
    root = Path(root)
    report = Report() if report is None else report
    if layout == "class-folders":
        split_dirs = {"train": [root]}
    else:
        split_dirs = {}
        for sub in (path for path, kind in _entries(root, report) if kind == "dir"):
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
    if notes is not None:
        notes["test_split"] = _recover_test_splits(files, splits)
    else:
        _recover_test_splits(files, splits)
    files, labels, splits = _interleaved(root, files, labels, splits)
    pil = require("PIL.Image", "data", "reading image folders") if files else None
    images = np.empty((len(files), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    originals = [""] * len(files)  # the file, where it holds more than the 48 px gray image (models get it)
    keep = np.ones(len(files), bool)
    for i, path in enumerate(progress(files, total=len(files), desc=f"reading {root.name}/")):
        read = _read_image(pil, path, report)
        if read is None:
            keep[i] = False
        else:
            images[i], more = read
            if more:
                originals[i] = os.path.abspath(path)
    ids = np.array([printable(p.relative_to(root).as_posix()) for p in files], dtype=str)
    codes = np.array(splits, dtype=np.int8)
    kept = np.array(originals, dtype=str)
    if not keep.all():
        images, ids, codes, kept = images[keep], ids[keep], codes[keep], kept[keep]
        labels = np.asarray(labels)[keep]
    return _split_by_code(images, np.asarray(labels, dtype=np.int64), ids, codes, source=str(root), originals=kept)


def _test_prefix(path: Path) -> str | None:
    """'test' for PublicTest_*, 'private_test' for PrivateTest_* (any case, '_' or '-' or nothing after), else None."""
    match = re.match(r"(publictest|privatetest)(?![a-z])", path.name.lower())
    return TEST_PREFIXES[match.group(1)] if match else None


def _recover_test_splits(files: list, splits: list) -> str:
    """FER2013's official PublicTest / PrivateTest splits from the file names of a test/ folder, as the CSV's
    Usage column gives them: when every file of the test folder starts with ``PublicTest`` or ``PrivateTest``,
    the ``PrivateTest`` ones become ``private_test`` (``splits`` is changed in place). Otherwise the folder
    stays one ``test`` split. Returns what was done, for the inspect summary ("" when there is no test folder)."""
    test_code = SPLIT_ORDER.index("test")
    members = [i for i, code in enumerate(splits) if code == test_code]
    if not members:
        return ""
    prefixes = [_test_prefix(files[i]) for i in members]
    if all(prefixes) and "private_test" in prefixes:
        for i, prefix in zip(members, prefixes):
            splits[i] = SPLIT_ORDER.index(prefix)
        return "test = PublicTest_*, private_test = PrivateTest_* (from the test folder's file names)"
    unnamed = sum(prefix is None for prefix in prefixes)
    if unnamed == len(prefixes):
        return "one test split (the test folder's file names do not name PublicTest/PrivateTest)"
    return (f"one test split ({unnamed} of {len(prefixes)} test files do not start with PublicTest/PrivateTest, "
            "so the official split cannot be recovered)")


def _interleaved(root: Path, files: list, labels: list, splits: list) -> tuple[list, list, list]:
    """The files in a fixed pseudo-random order (by sha256 of the path relative to ``root``) instead of class by
    class, so that nothing that later takes a slice of a split sees one class only. The same files give the same
    order on any machine, whatever order the file system lists them in."""
    keys = [hashlib.sha256(printable(p.relative_to(root).as_posix()).encode()).digest() for p in files]
    order = sorted(range(len(files)), key=keys.__getitem__)
    return [files[i] for i in order], [labels[i] for i in order], [splits[i] for i in order]


def _class_files(split_dir: Path, report: Report, top_level: bool):
    """(file, label) for every visible file under the class folders of ``split_dir``, sorted."""
    entries = _entries(split_dir, report)
    class_dirs = [path for path, kind in entries if kind == "dir"]
    if not class_dirs:
        report.bad(split_dir, "", "no class folders inside (expected e.g. angry/, happy/ ...)")
    for stray in (path for path, kind in entries if kind == "file"):
        if not top_level:  # files at the data root (README, CSV) are not data
            report.bad(stray, "", "file outside a class folder")
    for class_dir in class_dirs:
        label = label_index(class_dir.name)
        if label is None:
            files = _walk_files(class_dir, Report(strict=False))  # only counted: the whole folder is one bad entry
            report.bad(class_dir, "", f"unknown class name '{class_dir.name}' ({len(files)} files; expected one "
                                      f"of {', '.join(KNOWN_LABELS)} or a common alias such as anger, happiness)")
            continue
        files = _walk_files(class_dir, report)
        if not files:
            report.bad(class_dir, "", "empty class folder")
            continue
        yield from ((path, label) for path in files)


def _entries(folder: Path, report: Report) -> list:
    """(path, "dir" | "file") for the visible entries of ``folder``, sorted by name, symlinks followed.
    Broken or looping symlinks, unreadable entries and special files (pipes, devices) are bad entries."""
    try:
        paths = sorted(p for p in folder.iterdir() if _visible(p))
    except OSError as exc:
        report.bad(folder, "", f"cannot list folder ({exc.strerror or exc})")
        return []
    found = []
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            if path.is_symlink():
                reason = ("symlink loop" if exc.errno == errno.ELOOP
                          else "broken symlink (its target does not exist)" if exc.errno == errno.ENOENT
                          else f"symlink to an unreadable target ({exc.strerror or exc})")
            else:
                reason = f"cannot read ({exc.strerror or exc})"
            report.bad(path, "", reason)
            continue
        if stat.S_ISDIR(mode):
            found.append((path, "dir"))
        elif stat.S_ISREG(mode):
            found.append((path, "file"))
        else:
            report.bad(path, "", "not a regular file or folder (a pipe, socket or device)")
    return found


def _walk_files(top: Path, report: Report) -> list:
    """Every visible regular file under ``top`` (symlinked folders followed once), sorted. Iterative, so a
    deep tree cannot exhaust the stack; a symlink back to a folder already read is a bad entry."""
    files, stack = [], [top]
    status = os.stat(top)
    seen = {(status.st_dev, status.st_ino)}
    while stack:
        for path, kind in _entries(stack.pop(), report):
            if kind == "file":
                files.append(path)
                continue
            status = os.stat(path)
            if (status.st_dev, status.st_ino) in seen:
                report.bad(path, "", "symlink loop (leads back to a folder already read)")
                continue
            seen.add((status.st_dev, status.st_ino))
            stack.append(path)
    return sorted(files)


def _read_image(pil, path: Path, report: Report) -> tuple[np.ndarray, bool] | None:
    """(48x48 gray image, whether the file holds more than that: another size or colour), or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on odd metadata ("Corrupt EXIF data", "Skipping tag")
            with pil.open(path) as image:
                fer_form = image.mode == "L" and image.size == (IMAGE_SIZE, IMAGE_SIZE)
                return to_gray48(image), not fer_form
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
    return square_crop(image, IMAGE_SIZE, gray=True)
