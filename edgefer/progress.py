"""Progress bars for long work (tqdm, on stderr). tqdm comes with every extra that does long work;
on a bare install the work runs without a bar."""

from __future__ import annotations

import contextlib
import os
import sys


def progress(iterable=None, total: int | None = None, desc: str = "", disable: bool | None = None):
    """Wrap ``iterable`` in a progress bar on stderr. Off when stderr is not a terminal or
    EDGEFER_PROGRESS=0; EDGEFER_PROGRESS=1 forces it on."""
    if disable is None:
        from .logs import QUIET, verbosity

        forced = "0" if verbosity() == QUIET else os.environ.get("EDGEFER_PROGRESS")
        disable = forced == "0" or (forced != "1" and not sys.stderr.isatty())
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, leave=False)


_ACTIVE: list[str] = []  # descriptions of the activities in progress, innermost last


def _enabled() -> bool:
    from .logs import QUIET, verbosity

    forced = "0" if verbosity() == QUIET else os.environ.get("EDGEFER_PROGRESS")
    return forced == "1" or (forced != "0" and sys.stderr.isatty())


@contextlib.contextmanager
def activity(desc: str, after: float = 2.0):
    """A spinner with the elapsed time on stderr for one step without countable units (an ONNX export, a
    quantization); shown only once the step has taken ``after`` seconds, same on/off rule as ``progress``.
    Nested activities show the innermost one."""
    import threading
    import time

    if not _enabled():
        yield
        return
    _ACTIVE.append(desc)
    done = threading.Event()
    start = time.monotonic()

    def spin() -> None:
        frames, i, shown = "|/-\\", 0, False
        while not done.wait(0.25 if shown else after):
            if _ACTIVE and _ACTIVE[-1] == desc:
                sys.stderr.write(f"\r{frames[i % 4]} {desc} ({time.monotonic() - start:.0f} s)\033[K")
                sys.stderr.flush()
                shown, i = True, i + 1
        if shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        _ACTIVE.remove(desc)
