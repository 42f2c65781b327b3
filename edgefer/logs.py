"""How much edgefer and the libraries it drives print: quiet, normal or verbose.

Standard library only. The CLI sets the level once per command (``-q/--quiet``, ``-v/--verbose``); library code
asks ``verbosity()`` before printing progress or informational lines, and calls ``quiet_third_party()`` after
importing a chatty library (NNCF, OpenVINO, ONNX Runtime, Hugging Face hub) so its logs and progress bars stay
silent unless the user asked for ``--verbose``.
"""

from __future__ import annotations

import logging
import os
import sys

QUIET, NORMAL, VERBOSE = -1, 0, 1
THIRD_PARTY_LOGGERS = ("nncf", "openvino", "onnxruntime", "onnxscript", "onnx_ir", "torch", "timm",
                       "huggingface_hub", "urllib3", "matplotlib", "PIL", "modelopt")
_level = NORMAL


def set_verbosity(level: int) -> None:
    """Set the process-wide level; below VERBOSE third-party loggers are limited to errors."""
    global _level
    _level = max(QUIET, min(VERBOSE, int(level)))
    if _level < VERBOSE:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_HUB_VERBOSITY", "error")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    quiet_third_party()


def verbosity() -> int:
    return _level


def quiet_third_party() -> None:
    """Limit the known third-party loggers to errors (warnings too when quiet), unless verbose.

    Call again after importing a library that resets its own logger level on import (NNCF does)."""
    level = logging.INFO if _level >= VERBOSE else logging.ERROR
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    nncf = sys.modules.get("nncf")
    if nncf is not None and hasattr(nncf, "set_log_level") and _level < VERBOSE:
        nncf.set_log_level(logging.ERROR)


def info(message: str) -> None:
    """An informational line on stderr, suppressed by --quiet."""
    if _level > QUIET:
        print(message, file=sys.stderr, flush=True)


def debug(message: str) -> None:
    """A line on stderr only with --verbose."""
    if _level >= VERBOSE:
        print(message, file=sys.stderr, flush=True)
