"""Turn face crops into network input, in numpy only (used by the runtime, export checks and bench).

Resizing is bilinear with half-pixel centres and no antialiasing — the same arithmetic as
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` used in training — done as
two small cached matrix products with the normalisation folded in, so a 48x48 crop costs tens of µs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .errors import InputError
from .spec import ModelSpec

# ITU-R BT.601 luma, the weights OpenCV's cvtColor uses; keyed by the order of the input channels.
_LUMA = {"rgb": np.array([0.299, 0.587, 0.114], np.float32), "bgr": np.array([0.114, 0.587, 0.299], np.float32)}


@lru_cache(maxsize=64)
def resize_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix of bilinear weights, half-pixel centres, edge-clamped (torch's align_corners=False)."""
    matrix = np.zeros((dst, src), np.float32)
    pos = np.maximum((np.arange(dst) + 0.5) * (src / dst) - 0.5, 0.0)
    lo = np.minimum(pos.astype(np.int64), src - 1)
    hi = np.minimum(lo + 1, src - 1)
    frac = (pos - lo).astype(np.float32)
    rows = np.arange(dst)
    np.add.at(matrix, (rows, lo), 1.0 - frac)
    np.add.at(matrix, (rows, hi), frac)
    matrix.setflags(write=False)
    return matrix


def split_faces(faces, channels_first_check: bool = False) -> tuple[list[np.ndarray] | np.ndarray, bool]:
    """Normalise the accepted shapes to a batch; return (batch, was_single).

    Accepted: one image (H, W) or (H, W, C) with C in 1 or 3; a batch (N, H, W) or (N, H, W, C);
    or a list/tuple of images of any sizes. Pixels are uint8, or float in 0..255. Refused with an InputError
    rather than guessed: a 3-d array whose last axis is 2 or 4 (an image with 2 channels or alpha, not a batch
    of 2- or 4-pixel-wide images), ragged nested lists, non-numeric dtypes, NaN/inf and float values outside
    0..255. With ``channels_first_check`` (the recognizer's user-facing calls) also a (3, H, W) array: a
    channels-first image, or 3 gray faces? (pass those as a list or as (3, H, W, 1)); ``prepare`` reads it as
    a batch of 3 gray images, as dataset slices are.
    """
    if isinstance(faces, (list, tuple)):
        if not faces:
            raise InputError("empty list of faces")
        return [_check_image(_as_array(f, f"faces[{i}]"), f"faces[{i}]") for i, f in enumerate(faces)], False
    arr = _as_array(faces, "image")
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 3) and arr.shape[0] > 3):
        return _check_image(arr, "image")[None], True
    if arr.ndim == 3 and arr.shape[-1] in (2, 4) and min(arr.shape[:2]) > arr.shape[-1]:
        what = "BGRA/RGBA?" if arr.shape[-1] == 4 else "gray + alpha?"
        fix = "img[..., :3]" if arr.shape[-1] == 4 else "img[..., 0]"
        raise InputError(f"image: {arr.shape[-1]} channels ({what}), shape {arr.shape}; "
                         f"expected 1 or 3 channels: drop the alpha channel ({fix})")
    if channels_first_check and arr.ndim == 3 and arr.shape[0] == 3 and min(arr.shape[1:]) > 3:
        raise InputError(f"shape {arr.shape} is ambiguous: a channels-first (C, H, W) image or 3 gray faces? "
                         "Pass an image as (H, W, 3) (img.transpose(1, 2, 0)), or 3 faces as a list or (3, H, W, 1)")
    if arr.ndim in (3, 4):
        if arr.shape[0] == 0:
            raise InputError(f"empty batch: shape {arr.shape}")
        _check_image(arr[0], "faces[0]")
        try:
            _check_values(arr, "batch")
        except InputError:  # name the first face at fault
            for i in range(len(arr)):
                _check_values(arr[i], f"faces[{i}]")
            raise
        return arr, False
    raise InputError(f"expected an image (H, W[, C]) or a batch (N, H, W[, C]); got shape {arr.shape}")


def _as_array(value, what: str) -> np.ndarray:
    if isinstance(value, np.matrix):  # always 2-d, also when indexed: one gray image as a plain array
        return np.asarray(value)
    if isinstance(value, np.ndarray):
        return value
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"{what}: not an image array ({type(value).__name__}: {str(exc).splitlines()[0]})") from None
    if arr.dtype == object:
        kind = "a ragged or mixed nested list?" if isinstance(value, (list, tuple)) else f"got a {type(value).__name__}"
        raise InputError(f"{what}: not an image array ({kind})")
    return arr


def _check_image(img: np.ndarray, what: str) -> np.ndarray:
    if img.ndim == 3 and img.shape[-1] not in (1, 3):
        hint = " (channels first? use img.transpose(1, 2, 0))" if img.shape[0] in (1, 3) else ""
        raise InputError(f"{what}: {img.shape[-1]} channels; expected 1 (gray) or 3 (BGR/RGB), shape {img.shape}{hint}")
    if img.ndim not in (2, 3):
        raise InputError(f"{what}: expected (H, W) or (H, W, C), got shape {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise InputError(f"{what}: empty image, shape {img.shape}")
    _check_values(img, what)
    return img


def _check_values(arr: np.ndarray, what: str) -> None:
    if arr.dtype == np.uint8:
        return
    if arr.dtype.kind != "f":
        raise InputError(f"{what}: dtype {arr.dtype} not supported; pass uint8 (0..255) or float (0..255)")
    if arr.size == 0:
        return
    if not np.isfinite(arr).all():
        raise InputError(f"{what}: contains NaN or infinite values")
    low, high = float(arr.min()), float(arr.max())
    if low < 0 or high > 255:
        raise InputError(f"{what}: float pixel values must lie in 0..255, got {low:g}..{high:g} "
                         "(scale 0..1 images by 255; the model's own input scale comes from its spec)")


def prepare(faces, spec: ModelSpec, color: str = "bgr", out: np.ndarray | None = None) -> np.ndarray:
    """Return float32 NCHW input for ``spec`` from uint8 crops in ``color`` order ('bgr', 'rgb' or 'gray')."""
    return prepare_batch(split_faces(faces)[0], spec, color, out)


def prepare_batch(batch, spec: ModelSpec, color: str = "bgr", out: np.ndarray | None = None) -> np.ndarray:
    """``prepare`` for a batch already checked by ``split_faces`` (callers that size ``out`` from it)."""
    if not isinstance(color, str) or (color not in _LUMA and color != "gray"):
        raise InputError(f"color must be 'bgr', 'rgb' or 'gray', got {color!r}")
    size, channels = spec.input_size, spec.channels
    n = len(batch)
    if out is None:
        out = np.empty((n, channels, size, size), np.float32)
    scale = 1.0 / (255.0 * np.asarray(spec.std, np.float32))
    shift = -np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)
    if isinstance(batch, np.ndarray):
        _resize_into(batch, spec, color, scale, shift, out)
    else:
        for i, img in enumerate(batch):
            _resize_into(img[None], spec, color, scale, shift, out[i : i + 1])
    return out


def _to_planes(batch: np.ndarray, spec: ModelSpec, color: str) -> list[np.ndarray]:
    """Float32 planes (N, H, W), one per network input channel, in the network's channel order."""
    gray_in = batch.ndim == 3 or batch.shape[-1] == 1 or color == "gray"
    if batch.ndim == 4 and batch.shape[-1] == 3 and color == "gray":
        raise InputError("color='gray' but the images have 3 channels")
    if gray_in:
        plane = (batch if batch.ndim == 3 else batch[..., 0]).astype(np.float32, copy=False)
        return [plane] * spec.channels
    if spec.color_order == "gray":  # a gray network, 1 channel or the gray plane replicated into 3
        return [batch.astype(np.float32, copy=False) @ _LUMA[color]] * spec.channels
    order = [color.index(c) for c in spec.color_order]  # e.g. bgr input to an rgb network -> [2, 1, 0]
    return [batch[..., k].astype(np.float32, copy=False) for k in order]


def _resize_into(batch, spec, color, scale, shift, out) -> None:
    size = spec.input_size
    rows = resize_matrix(batch.shape[1], size)
    cols_t = resize_matrix(batch.shape[2], size).T
    tmp = np.empty((len(batch), size, batch.shape[2]), np.float32)
    for c, plane in enumerate(_to_planes(batch, spec, color)):
        # (S, H) @ (N, H, W) @ (W, S) with the normalisation folded into the row matrix.
        _matmul_single_threaded(rows * scale[c], plane, tmp)
        _matmul_single_threaded(tmp, cols_t, out[:, c])
        out[:, c] += shift[c]


# OpenBLAS runs a product with m*n*k above 2**18 on several threads. Those threads wake slowly when the
# inference runtime's own pool (or anything else) holds the cores: a 48->112 px resize measured 24-56 ms
# instead of 40 us on the 2-core dev box. Row blocks under the threshold keep every call single-threaded.
_BLAS_SINGLE_THREAD_MNK = 1 << 18


def _matmul_single_threaded(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = a @ b`` in blocks of rows of ``a`` small enough for single-threaded BLAS calls."""
    step = max(1, _BLAS_SINGLE_THREAD_MNK // (a.shape[-1] * b.shape[-1]))
    for i in range(0, a.shape[-2], step):
        np.matmul(a[..., i : i + step, :], b, out=out[..., i : i + step, :])
