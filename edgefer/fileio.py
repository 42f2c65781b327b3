"""Atomic writes and hashing: every artefact is written to a temporary name, then renamed."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


# errors of the disk or the file system, not of edgefer: a full disk, a read-only mount, no permission, a path
# through a file or onto a directory
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                          errno.EISDIR, errno.ENOTDIR})


def write_error(path, exc: OSError):
    """The ``OutputError`` (a ``UsageError``) for ``exc`` (one of ``WRITE_ERRNOS``) while writing ``path``: one line
    naming it."""
    from .errors import OutputError

    return OutputError(f"{path}: cannot write ({exc.strerror or exc}); nothing was written there")


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds. A full disk,
    a read-only file system or a missing permission is a ``UsageError`` naming ``path`` (the temporary file is
    removed; ``path`` keeps what it held)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise write_error(path, exc) from None
        raise
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the permissions open() would
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS and exc.filename in (None, tmp, str(path)):  # not an input read in the block
            raise write_error(path, exc) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def read_json(path: str | Path, error: type[Exception]):
    """Parse a JSON file; a file that is not valid JSON (or UTF-8) raises ``error`` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None


def _jsonable(obj):
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --- outputs: checked before any work, published whole -------------------------------------------------------

STAGE_MARK = ".stage-"


def check_output(path: str | Path, kind: str = "dir", exist_ok: bool = False, option: str = "--out") -> Path:
    """Check up front that ``path`` can be written as a ``kind`` ("dir" or "file") output.

    Raises UsageError (one line naming the option and path) when the path is the wrong kind or not a regular
    file or directory (a device, FIFO or socket), when it already holds output and ``exist_ok`` is false, or
    when its nearest existing parent is not a writable directory.
    Creates nothing."""
    from .errors import UsageError

    path = Path(path)
    if kind not in ("dir", "file"):
        raise ValueError(f"kind must be 'dir' or 'file', not {kind!r}")
    if path.exists() or path.is_symlink():
        if path.exists() and not (path.is_dir() or path.is_file()):
            raise UsageError(f"{option} {path}: is not a regular file (a device, FIFO or socket); outputs are "
                             "only written as regular files")
        if kind == "dir" and not path.is_dir():
            raise UsageError(f"{option} {path}: exists and is not a directory")
        if kind == "file" and path.is_dir():
            raise UsageError(f"{option} {path}: is a directory; give a file name")
        occupied = kind == "file" or any(not p.name.startswith(".") for p in path.iterdir())
        if occupied and not exist_ok:
            raise UsageError(f"{option} {path}: already exists; pass --exist-ok to replace it")
    parent = path if kind == "dir" and path.is_dir() else path.parent
    while not parent.exists() and parent != parent.parent:
        if parent.is_symlink():  # a folder to create that is a symlink to nowhere
            raise UsageError(f"{option} {path}: {parent} is a broken symbolic link")
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: {parent} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgefer-write-test.", dir=parent)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write in {parent} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def remove_stale_stages(path: str | Path) -> None:
    """Remove staging directories that killed runs left beside ``path`` (``.<name>.stage-<pid>-*``), and put
    back an old output directory that a run killed between two renames left aside."""
    import shutil

    path = Path(path)
    if not path.parent.is_dir():
        return
    for stage in path.parent.glob(f".{path.name}{STAGE_MARK}*"):
        pid = stage.name[len(path.name) + len(STAGE_MARK) + 1:].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue  # another run is still writing there
        if stage.name.endswith(".old") and not path.exists():
            os.rename(stage, path)
        else:
            shutil.rmtree(stage, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_stage(path: str | Path) -> Path:
    """An empty staging directory beside ``path`` (``.<name>.stage-<pid>-*``), after removing what killed runs
    left there; publish it with ``publish_stage``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(path)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}{STAGE_MARK}{os.getpid()}-", dir=path.parent))
    os.chmod(stage, 0o777 & ~_UMASK)
    return stage


def publish_stage(stage: Path, path: str | Path, keep=None) -> None:
    """Put the staging directory ``stage`` in the place of ``path`` in one step, so a kill at any moment leaves
    either the complete old directory or the complete new one. ``keep(name) -> bool`` chooses entries of the
    old directory that the new one carries over when it has no entry of that name."""
    import shutil

    path = Path(path)
    if path.is_dir() and keep is not None:
        for entry in path.iterdir():
            if keep(entry.name) and not (stage / entry.name).exists():
                _link_or_copy(entry, stage / entry.name)
    if not path.exists():
        os.rename(stage, path)
    elif _rename_exchange(stage, path):
        shutil.rmtree(stage, ignore_errors=True)  # now holds the old set
    else:  # two renames; a kill between them is repaired by remove_stale_stages on the next run
        old = stage.with_name(stage.name + ".old")
        os.rename(path, old)
        os.rename(stage, path)
        shutil.rmtree(old, ignore_errors=True)


# the JSON records output folders describe themselves with (export, bench, qat, calibrate), and files a record
# implies without listing them
RECORDS = {"export.json": (), "bench.json": (), "qat.json": (), "manifest.json": ("calib.npz",)}


def recorded_outputs(directory: str | Path) -> set[str]:
    """Names of the entries of ``directory`` that an edgefer command wrote there, from the records it left
    (``export.json`` etc. and the paths under their "files")."""
    directory = Path(directory)
    names: set[str] = set()
    for record, implied in RECORDS.items():
        path = directory / record
        if not path.is_file():
            continue
        names.update((record, *implied))
        try:
            files = json.loads(path.read_text(encoding="utf-8")).get("files")
        except (OSError, ValueError, AttributeError):
            continue
        for text in _strings(files):
            names.update(Path(text).parts)
    return names


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _strings(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _strings(value)


def not_recorded(directory: str | Path):
    """A ``keep`` for ``staged_dir``: what the user put in ``directory`` (anything its records do not list)."""
    recorded = recorded_outputs(directory) if Path(directory).is_dir() else set()
    return lambda name: name not in recorded and STAGE_MARK not in name


@contextlib.contextmanager
def staged_dir(path: str | Path, keep=not_recorded):
    """Yield an empty staging directory beside ``path``; when the block succeeds, publish it as ``path`` in
    one step, so a kill at any moment leaves either the complete old directory or the complete new one.

    ``keep(name) -> bool`` chooses entries of the old directory that the new one carries over when it has no
    entry of that name. By default (``not_recorded``) the files the user put there are carried over and what
    an earlier edgefer command wrote there (as its record lists) is replaced; ``keep=None`` carries nothing."""
    import shutil

    from .errors import OutputError

    stage = new_stage(path)
    try:
        try:
            yield stage
        except OutputError as exc:  # name the output the user asked for, not the hidden stage
            raise OutputError(str(exc).replace(str(stage), str(path))) from None
        publish_stage(stage, path, keep(path) if keep is not_recorded else keep)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    import shutil

    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True)
        return
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)
