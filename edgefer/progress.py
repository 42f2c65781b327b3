"""Progress bars for long work (tqdm, on stderr). tqdm comes with every extra that does long work;
on a bare install the work runs without a bar."""

from __future__ import annotations

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
