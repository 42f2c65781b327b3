"""Procedural synthetic FER2013-format faces (numpy only), for the demo and tests. NOT real faces.

Each 48x48 gray image is a face drawn with anti-aliased signed-distance shapes (face oval, hair, eyes,
brows, nose, mouth). The 7 expressions are encoded by geometry (mouth curve/opening/width, brow height and
slant, eye opening, nose wrinkle, mouth asymmetry) scaled by a random intensity, on top of per-identity
variation, random pose (rotation, scale, shift), lighting gradient, blur, noise and partial occlusion, so
classes overlap: learnable, not trivial. Class priors and the Usage split follow FER2013.

The output is bit-identical on every CPU (x86 with or without AVX-512/AMX, ARM): numpy's transcendental
functions (``np.sin``, ``np.exp``, ``np.power``, ``np.hypot`` ...) take CPU-specific SIMD code paths whose
last bits differ, and ``Generator.uniform``/``normal`` run C code a compiler may contract into fused
multiply-adds. So every number here comes from the generator's raw doubles (``Generator.random``,
``integers``, ``permutation``: integer arithmetic and an exact power-of-two scale) and only IEEE-754
correctly rounded operations (+ - * / sqrt, min/max/clip, rint, frexp/ldexp): sine, cosine, exp, log and
powers are the polynomials below, and normal deviates are Box-Muller from them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..fileio import atomic_path, sha256_file, write_bytes, write_json
from ..spec import FER2013_LABELS
from .dataset import IMAGE_SIZE, FERDataset
from .readers import synthetic_marker

SYNTH_VERSION = 2  # 2: CPU-independent arithmetic (version 1 depended on the CPU's SIMD code paths)
# FER2013 class frequencies (all 35,887 images): angry, disgust, fear, happy, sad, surprise, neutral
FER2013_PRIORS = np.array([0.138, 0.015, 0.143, 0.251, 0.169, 0.112, 0.172])
USAGE_FRACTIONS = {"PublicTest": 0.1, "PrivateTest": 0.1}  # the rest is Training, as in FER2013
SYNTH_CSV_NAME = "fer2013_synthetic.csv"  # the file name ``edgefer data synth --out DIR`` writes in DIR
CHUNK = 256  # images rendered at once (fixed: the output does not depend on it)

# Expression geometry per class, at full intensity (neutral = all zero / one):
# mouth bend (+ corners up), mouth opening, mouth width factor, brow raise, brow slant (+ inner end up),
# eye opening factor, nose wrinkle, mouth asymmetry.
EXPRESSIONS = {
    "angry":    (-0.30, 0.00, 0.82, -0.80, -1.00, 0.75, 0.30, 0.0),
    "disgust":  (-0.55, 0.15, 0.90, -0.45, -0.40, 0.70, 1.00, 1.0),
    "fear":     (-0.30, 0.45, 1.22, 0.80, 0.70, 1.35, 0.00, 0.0),
    "happy":    (1.00, 0.20, 1.18, 0.05, 0.00, 0.80, 0.00, 0.0),
    "sad":      (-0.85, 0.00, 0.92, 0.05, 1.00, 0.80, 0.00, 0.0),
    "surprise": (0.00, 1.00, 0.70, 1.00, 0.20, 1.45, 0.00, 0.0),
    "neutral":  (0.00, 0.00, 1.00, 0.00, 0.00, 1.00, 0.00, 0.0),
}
EXPRESSION_TABLE = np.array([EXPRESSIONS[name] for name in FER2013_LABELS])
EXPRESSION_NOISE = np.array([0.15, 0.06, 0.08, 0.20, 0.25, 0.12, 0.15, 0.15])


# ------------------------------------------------------------------- CPU-independent elementary functions
# Each is a fixed sequence of correctly rounded IEEE-754 operations, so it returns the same bits on any CPU.
# Accuracy (~1e-13 relative) is far below what a uint8 pixel can show.

_TWO_PI = 6.283185307179586
_HALF_PI = 1.5707963267948966
_PI = 3.141592653589793
_LN2 = 0.6931471805599453
_SQRT_HALF = 0.7071067811865476


def _sin(x) -> np.ndarray:
    """sin(x): reduced to [-pi/2, pi/2] with exact operations, then the Taylor polynomial to x**17."""
    x = np.asarray(x, dtype=np.float64)
    r = x - np.rint(x / _TWO_PI) * _TWO_PI  # [-pi, pi]
    r = np.where(r > _HALF_PI, _PI - r, np.where(r < -_HALF_PI, -_PI - r, r))
    r2 = r * r
    poly = np.zeros_like(r)
    for k in range(8, -1, -1):  # sum of (-1)^k r^(2k+1) / (2k+1)!, Horner in r^2
        poly = poly * r2 + (-1) ** k / math.factorial(2 * k + 1)  # int / int: correctly rounded
    return poly * r


def _cos(x) -> np.ndarray:
    return _sin(np.asarray(x, dtype=np.float64) + _HALF_PI)


def _exp(x) -> np.ndarray:
    """exp(x): x = k ln2 + r with |r| <= ln2/2, the Taylor polynomial of exp(r) to r**14, times 2**k."""
    x = np.clip(np.asarray(x, dtype=np.float64), -700.0, 700.0)
    k = np.rint(x / _LN2)
    r = x - k * _LN2
    poly = np.ones_like(r)
    for n in range(14, 0, -1):
        poly = poly * r / n + 1.0
    return np.ldexp(poly, k.astype(np.int32))


def _log(x) -> np.ndarray:
    """log(x) for x > 0: x = m 2**e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh((m-1)/(m+1)) as a series."""
    m, e = np.frexp(np.asarray(x, dtype=np.float64))
    low = m < _SQRT_HALF
    m = np.where(low, m * 2.0, m)
    e = np.where(low, e - 1, e)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    poly = np.zeros_like(s)
    for k in range(11, -1, -1):
        poly = poly * s2 + 1.0 / (2 * k + 1)
    return e * _LN2 + 2.0 * s * poly


def _uniform(rng, low, high, size=None) -> np.ndarray:
    """Like ``rng.uniform`` but computed here (no contraction of low + (high - low) * u into an FMA)."""
    return low + (high - low) * rng.random(size)


def _normal(rng, loc, scale, size) -> np.ndarray:
    """Normal deviates by Box-Muller from two raw uniform draws, with the exact functions above."""
    u1 = 1.0 - rng.random(size)  # (0, 1]
    u2 = rng.random(size)
    return loc + scale * (np.sqrt(-2.0 * _log(u1)) * _cos(_TWO_PI * u2))


def class_quota(n: int, priors=FER2013_PRIORS) -> np.ndarray:
    """Images per class for ``n`` images: largest-remainder rounding of ``n * priors``."""
    exact = n * np.asarray(priors) / np.sum(priors)
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
    return counts


def synthesize(n: int, seed: int = 0) -> FERDataset:
    """``n`` synthetic faces as a ``FERDataset`` (``synthetic=True``) with FER2013 class priors and a
    per-class ~80/10/10 Training/PublicTest/PrivateTest ``usage``. Deterministic for a given (n, seed)."""
    validate_synth_options(n, seed)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(FER2013_LABELS)), class_quota(n)))
    usage = _usage(labels, rng)
    params = _draw_params(labels, rng)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for start in range(0, n, CHUNK):
        part = slice(start, min(start + CHUNK, n))
        images[part] = _render({k: v[part] for k, v in params.items()}, rng)
    ids = [f"synthetic:seed={seed}:{i}" for i in range(n)]
    return FERDataset(images, labels, ids, name="all", source=f"synthetic(n={n}, seed={seed})", synthetic=True,
                      usage=usage)


def validate_synth_options(n, seed) -> None:
    """``DataError`` unless ``n`` is an image count >= 1 and ``seed`` a non-negative integer (numpy seeds)."""
    for name, value, low in (("--n", n, 1), ("--seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            what = "a number of images, at least 1" if name == "--n" else "a non-negative integer"
            raise DataError(f"{name} must be {what}, got {value!r}")


def synth_csv_path(out: str | Path, default_name: str = SYNTH_CSV_NAME) -> Path:
    """Where ``edgefer data synth --out OUT`` writes its CSV: OUT itself when it names a file (it has a suffix,
    ``x.csv`` or ``x.txt``, or is an existing file), else ``OUT/<default_name>`` (an existing directory, a name
    ending in a slash, or a name without suffix). ``DataError`` when that place cannot hold a file: a path
    below an existing file, or a directory where the file should be."""
    text = os.fspath(out)
    out = Path(out)
    names_dir = text.endswith(("/", os.sep)) or out.is_dir() or (not out.suffix and not out.exists())
    path = out / default_name if names_dir else out
    if path.is_dir():
        raise DataError(f"--out {path}: is a directory, not a file to write the CSV to")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(f"--out {path}: {parent} is a file, not a directory")
            break
    return path


def _usage(labels: np.ndarray, rng) -> np.ndarray:
    usage = np.full(labels.size, "Training", dtype="<U11")
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        start = 0
        for name, fraction in USAGE_FRACTIONS.items():
            take = int(np.floor(members.size * fraction + 0.5))
            usage[members[start:start + take]] = name
            start += take
    return usage


def _draw_params(labels: np.ndarray, rng) -> dict:
    """Every random number of every image, drawn up front in a fixed order (so chunking does not matter)."""
    n = labels.size
    ids = max(8, n // 6)  # identities: each appears with several expressions
    identity = {
        "face_w": _uniform(rng, 0.82, 1.0, ids), "face_h": _uniform(rng, 1.12, 1.36, ids),
        "eye_dx": _uniform(rng, 0.36, 0.47, ids), "eye_y": _uniform(rng, -0.24, -0.10, ids),
        "eye_rx": _uniform(rng, 0.12, 0.17, ids), "eye_ry": _uniform(rng, 0.055, 0.085, ids),
        "brow_gap": _uniform(rng, 0.15, 0.24, ids), "brow_len": _uniform(rng, 0.22, 0.32, ids),
        "brow_w": _uniform(rng, 0.030, 0.060, ids), "nose_y": _uniform(rng, 0.18, 0.30, ids),
        "mouth_y": _uniform(rng, 0.50, 0.64, ids), "mouth_w": _uniform(rng, 0.26, 0.36, ids),
        "lip_w": _uniform(rng, 0.030, 0.055, ids), "skin": _uniform(rng, 110, 215, ids),
        "ink": _uniform(rng, 0.20, 0.55, ids), "hairline": _uniform(rng, -0.95, -0.55, ids),
        "hair": _uniform(rng, 15, 120, ids), "has_hair": rng.random(ids) < 0.85,
    }
    who = rng.integers(0, ids, n)
    params = {name: values[who] for name, values in identity.items()}
    intensity = _uniform(rng, 0.5, 1.1, n)[:, None]
    neutral = EXPRESSION_TABLE[FER2013_LABELS.index("neutral")]
    expression = neutral + intensity * (EXPRESSION_TABLE[labels] - neutral)
    expression += _normal(rng, 0.0, 1.0, expression.shape) * EXPRESSION_NOISE
    expression[:, 7] *= rng.choice([-1.0, 1.0], n)  # asymmetry to either side
    for i, name in enumerate(("bend", "open", "width", "brow_up", "brow_slant", "eye_open", "wrinkle", "asym")):
        params[name] = expression[:, i]
    params["open"] = np.clip(params["open"], 0.0, None) * (rng.random(n) < np.where(labels == 3, 0.5, 1.0))
    params["eye_open"] = np.clip(params["eye_open"], 0.35, None)
    params["wrinkle"] = np.clip(params["wrinkle"], 0.0, None)
    params.update(
        angle=_normal(rng, 0.0, 0.08, n), scale=_uniform(rng, 15.5, 18.5, n),
        cx=24 + _uniform(rng, -2.0, 2.0, n), cy=25 + _uniform(rng, -2.0, 2.0, n),
        background=_uniform(rng, 0, 255, n), bg_gradient=_normal(rng, 0, 25, (n, 2)),
        light=_normal(rng, 0, 0.18, (n, 2)), gamma=_exp(_normal(rng, 0, 0.2, n)),
        noise=_uniform(rng, 2.0, 9.0, n), blur=rng.random(n) < 0.3,
        occlude=rng.random(n) < 0.3, occ_box=_uniform(rng, 0, 1, (n, 4)), occ_value=_uniform(rng, 0, 255, n),
    )
    return params


def _coverage(distance, pixel):
    """Anti-aliased coverage (0..1) of a shape from its signed distance (negative inside)."""
    return np.clip(0.5 - distance / pixel, 0.0, 1.0)


def _ellipse(u, v, cx, cy, rx, ry):
    """Approximate signed distance to an ellipse (Quilez), vectorised over the batch."""
    x, y = (u - cx) / rx, (v - cy) / ry
    k0 = np.sqrt(x * x + y * y)
    xr, yr = x / rx, y / ry
    k1 = np.sqrt(xr * xr + yr * yr) + 1e-6
    return k0 * (k0 - 1.0) / k1


def _segment(u, v, x0, y0, x1, y1, radius):
    """Signed distance to a capsule (segment with round caps) of the given radius."""
    bx, by = x1 - x0, y1 - y0
    h = np.clip(((u - x0) * bx + (v - y0) * by) / (bx * bx + by * by + 1e-9), 0.0, 1.0)
    return _hypot(u - x0 - bx * h, v - y0 - by * h) - radius


def _hypot(a, b):
    return np.sqrt(a * a + b * b)


def _paint(image, alpha, value):
    image *= 1.0 - alpha
    image += alpha * value


def _render(p: dict, rng) -> np.ndarray:
    b = p["angle"].size
    # float32 pixels (exactly rounded arithmetic in float32 is as CPU-independent as in float64, and 2x faster)
    col = lambda name: p[name][:, None, None].astype(np.float32)  # noqa: E731 - per-image scalar over the grid
    grid = np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5
    gx, gy = grid[None, None, :], grid[None, :, None]
    cos, sin = _cos(col("angle")).astype(np.float32), _sin(col("angle")).astype(np.float32)
    dx, dy = gx - col("cx"), gy - col("cy")
    u = (dx * cos + dy * sin) / col("scale")  # face coordinates: half face width ~ 1, y down
    v = (-dx * sin + dy * cos) / col("scale")
    pixel = 1.0 / col("scale")
    col_bg, light = p["bg_gradient"].astype(np.float32), p["light"].astype(np.float32)

    image = col("background") + col_bg[:, 0, None, None] * (gx - 24) / 24 \
        + col_bg[:, 1, None, None] * (gy - 24) / 24 + np.zeros((b, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    skin, ink = col("skin"), col("skin") * (1.0 - col("ink")) - 10
    face = _ellipse(u, v, 0.0, 0.05, col("face_w"), col("face_h"))
    hair = np.maximum(_ellipse(u, v, 0.0, 0.0, col("face_w") * 1.1, col("face_h") * 1.12),
                      v - col("hairline") - 0.06 * _sin(9 * u).astype(np.float32))
    _paint(image, _coverage(face, pixel), skin)
    _paint(image, _coverage(hair, pixel) * col("has_hair"), col("hair"))

    # eyes: sclera, iris, upper lid
    eye_ry = col("eye_ry") * col("eye_open")
    for side in (-1.0, 1.0):
        ex = side * col("eye_dx")
        _paint(image, _coverage(_ellipse(u, v, ex, col("eye_y"), col("eye_rx"), eye_ry), pixel),
               np.minimum(skin + 35, 250))
        iris = np.minimum(eye_ry, col("eye_rx") * 0.55)
        _paint(image, _coverage(_ellipse(u, v, ex, col("eye_y"), iris, iris), pixel), ink * 0.5)
        _paint(image, _coverage(_segment(u, v, ex - col("eye_rx"), col("eye_y"), ex + col("eye_rx"),
                                         col("eye_y") - eye_ry, 0.02), pixel) * 0.7, ink)
        # brows: raised by brow_up, inner end up for positive slant, drawn together when lowered
        outer_x = side * (col("eye_dx") + col("brow_len") * 0.55)
        inner_x = side * (col("eye_dx") - col("brow_len") * 0.45 - 0.05 * np.clip(-col("brow_slant"), 0, None))
        brow_y = col("eye_y") - col("brow_gap") - 0.09 * col("brow_up")
        _paint(image, _coverage(_segment(u, v, outer_x, brow_y, inner_x, brow_y - 0.08 * col("brow_slant"),
                                         col("brow_w")), pixel), ink)

    # nose: bridge shade, nostrils, wrinkles (disgust), smile folds (happy)
    nose_y = col("nose_y")
    shade = skin * 0.72
    _paint(image, _coverage(_segment(u, v, 0.0, col("eye_y") + 0.08, 0.03, nose_y, 0.03), pixel) * 0.5, shade)
    for side in (-1.0, 1.0):
        _paint(image, _coverage(_ellipse(u, v, side * 0.08, nose_y, 0.045, 0.028), pixel) * 0.8, ink)
        fold = _segment(u, v, side * 0.17, nose_y + 0.02, side * (col("mouth_w") * col("width") + 0.07),
                        col("mouth_y") - 0.04, 0.018)
        _paint(image, _coverage(fold, pixel) * np.clip(col("bend"), 0, 1) * 0.8, shade)
    for k in range(3):
        y = col("eye_y") + 0.10 + 0.05 * k
        _paint(image, _coverage(_segment(u, v, -0.09, y, 0.09, y, 0.016), pixel) * np.clip(col("wrinkle"), 0, 1),
               shade)

    # mouth: opening, then the lip line y = mouth_y - 0.14 * bend * (x/w)^2 + 0.07 * asym * x/w
    half = col("mouth_w") * col("width")
    mouth_y = col("mouth_y")
    opening = col("open") * 0.16
    _paint(image, _coverage(_ellipse(u, v, 0.0, mouth_y + opening * 0.3, half * 0.85, opening + 1e-3), pixel)
           * (col("open") > 0.02), ink * 0.4)
    x = np.clip(u, -half, half) / half
    line_y = mouth_y - 0.14 * col("bend") * x * x + 0.07 * col("asym") * x
    slope = (-0.28 * col("bend") * x + 0.07 * col("asym")) / half
    lips = _hypot(u - x * half, (v - line_y) / np.sqrt(1 + slope * slope)) - col("lip_w")
    _paint(image, _coverage(lips, pixel), ink)

    # light, occlusion, blur, noise, contrast
    image *= 1.0 + light[:, 0, None, None] * (gx - 24) / 24 + light[:, 1, None, None] * (gy - 24) / 24
    box = p["occ_box"]
    x0, y0 = box[:, 0] * 40, box[:, 1] * 40
    x1, y1 = x0 + 10 + box[:, 2] * 18, y0 + 6 + box[:, 3] * 14
    inside = ((gx >= x0[:, None, None]) & (gx < x1[:, None, None]) & (gy >= y0[:, None, None])
              & (gy < y1[:, None, None]) & p["occlude"][:, None, None])
    image[inside] = np.broadcast_to(col("occ_value"), image.shape)[inside]
    blurred = image.copy()
    blurred[:, 1:-1, 1:-1] = sum(image[:, 1 + dy:47 + dy, 1 + dx:47 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    image = np.where(col("blur"), blurred, image)
    image += (_normal(rng, 0.0, 1.0, image.shape) * col("noise")).astype(np.float32)
    level = np.clip(image, 0, 255) / 255.0
    powered = _exp(col("gamma") * _log(np.maximum(level, np.float32(1e-30))))  # level ** gamma, in float64
    image = (255.0 * np.where(level > 0, powered, 0.0)).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


_PIXEL_TEXT = np.array([str(i) for i in range(256)], dtype=object)


def write_fer_csv(path: str | Path, data: FERDataset, usage=None, provenance: dict | None = None) -> Path:
    """Write ``data`` as a FER2013 CSV (``emotion,pixels[,Usage]``; Usage from ``usage`` or ``data.usage``,
    left out when neither). Synthetic data also gets the marker ``<path>.synthetic.json`` (with
    ``provenance`` and the CSV's sha256) that makes every reader and report say "synthetic".

    The two are published as one unit as far as readers can tell: a synthetic CSV's marker is renamed into
    place before the CSV (a real CSV's stale marker is removed after it), and readers check the marker's sha256,
    so a kill between the two renames is a clear error, never data labelled wrongly. When the CSV cannot be
    published, the old marker is put back."""
    path = Path(path)
    usage = data.usage if usage is None else np.asarray(usage, dtype=str)
    marker = synthetic_marker(path)
    old_marker = marker.read_bytes() if marker.is_file() else None
    marker_written = False
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write("emotion,pixels" + (",Usage" if usage is not None else "") + "\n")
                for i in range(len(data)):
                    pixels = " ".join(_PIXEL_TEXT[data.images[i].ravel()])
                    f.write(f"{data.labels[i]},{pixels}" + (f",{usage[i]}" if usage is not None else "") + "\n")
            if data.synthetic:
                write_json(marker, {"synthetic": True, "rows": len(data), "csv_sha256": sha256_file(tmp),
                                    "generator": "edgefer.data.synth", "synth_version": SYNTH_VERSION,
                                    **(provenance or {})})
                marker_written = True
    except BaseException:
        if marker_written:  # the CSV was not published: the marker must keep naming the old one
            try:
                if old_marker is None:
                    marker.unlink(missing_ok=True)
                else:
                    write_bytes(marker, old_marker)
            except Exception:  # cannot put it back (the disk is full): then no marker rather than a wrong one
                marker.unlink(missing_ok=True)
        raise
    if not data.synthetic:
        marker.unlink(missing_ok=True)  # a real data set written over an old synthetic one
    return path
