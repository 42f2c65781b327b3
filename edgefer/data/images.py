"""One face image at a model's size: the centred square crop, area-averaged when shrinking, bilinear when
enlarging, gray or RGB (``square_crop``, ``read_face``), and ``printable`` for the file names in messages.
numpy + stdlib; Pillow imported inside the functions. Below ``dataset`` and ``readers``, which both use it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError, require


def printable(text) -> str:
    """``text`` (a str or path) safe to print and write as JSON: bytes of a file name that are not valid UTF-8
    (kept by Python as lone surrogates) become ``\\xNN`` escapes, e.g. ``caf\\xe9.png``."""
    text = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that are not escaped bytes (e.g. from JSON)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def square_crop(image, size: int, gray: bool) -> np.ndarray:
    """``readers.to_gray48``'s rule at any ``size``, gray (L) or RGB: uint8 (size, size) or (size, size, 3)."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16"):
        image = Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8))
    image = image.convert("L" if gray else "RGB")
    width, height = image.size
    if (width, height) != (size, size):
        side = min(width, height)
        box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
        shrink = side > size
        image = image.resize((size, size), Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR, box=box)
    return np.asarray(image, dtype=np.uint8)


def read_face(source: str | Path | np.ndarray, size: int, gray: bool = True) -> np.ndarray:
    """One face as a model of ``size`` px takes it, from its original file (or a uint8 gray array): the centred
    square crop, area-averaged (Pillow BOX) when shrinking, bilinear when enlarging, gray by ITU-R 601 luma or
    RGB. A file that is gone or unreadable since the data was read is one ``DataError`` naming it."""
    pil = require("PIL.Image", "data", "reading image folders")
    if isinstance(source, np.ndarray):
        return square_crop(pil.fromarray(np.ascontiguousarray(source, np.uint8)), size, gray)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pil.open(source) as image:
                return square_crop(image, size, gray)
    except (pil.UnidentifiedImageError, pil.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{printable(source)}: cannot read the image again at the model's size "
                        f"({type(exc).__name__}: {exc}); was it changed or removed since the data was read?") from None
