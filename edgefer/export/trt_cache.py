"""TensorRT INT8 calibration caches (implicit quantization: TensorRT 10.x, the only INT8 path DLA takes there).

The text format TensorRT's calibrators write and read back (``IInt8Calibrator::readCalibrationCache``)::

    TRT-100300-EntropyCalibration2
    input: 3c010a14
    /stem/conv/Conv_output_0: 3d0b7086

a header ``TRT-<version>-<algorithm>``, then one line per tensor: its name as the ONNX parser names it (the ONNX
tensor name), a colon and a space, and its scale (``amax / 127``) as the 8 hex digits of the big-endian IEEE
float32. ``<version>`` is ``NV_TENSORRT_VERSION``: ``major*10000 + minor*100 + patch`` from TensorRT 10
(``100300`` for 10.3.0, JetPack 6.1/6.2), ``major*1000 + minor*100 + patch`` before (``8602`` for 8.6.2).
TensorRT rejects a cache whose header names another version or another algorithm than the calibrator's
("Calibration table does not match calibrator algorithm type"), so ``edgefer build-engine`` rewrites the header
for the TensorRT it runs, and ``retarget`` does it for ``trtexec --calib`` on another version. numpy-free.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import ExportError
from ..fileio import atomic_path

ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")
DEFAULT_ALGORITHM = "EntropyCalibration2"  # trtexec --calib uses an IInt8EntropyCalibrator2
DEFAULT_TENSORRT = "10.3.0"  # JetPack 6.1 / 6.2
SUFFIX = ".calib"
MIN_SCALE = 2.0 ** -32  # a tensor that was always 0 still gets a valid, positive scale


@dataclass(frozen=True)
class CalibrationCache:
    """A parsed TensorRT calibration cache: header fields and the scale of each tensor (amax = 127 * scale)."""

    version: int
    algorithm: str
    scales: dict[str, float]

    @property
    def header(self) -> str:
        return f"TRT-{self.version}-{self.algorithm}"

    def to_text(self) -> str:
        lines = [self.header] + [f"{name}: {_hex(scale)}" for name, scale in self.scales.items()]
        return "\n".join(lines) + "\n"

    def amax(self, name: str) -> float:
        return self.scales[name] * 127.0


def version_number(version: str) -> int:
    """``"10.3.0"`` -> 100300, ``"8.6.1.6"`` -> 8601: the number TensorRT puts in the cache header."""
    try:
        parts = [int(p) for p in str(version).split(".")[:3]]
    except ValueError:
        raise ExportError(f"TensorRT version {version!r}: expected MAJOR.MINOR.PATCH, e.g. 10.3.0") from None
    major, minor, patch = (parts + [0, 0])[:3]
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def _hex(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def from_amax(amax: dict[str, float], tensorrt_version: str = DEFAULT_TENSORRT,
              algorithm: str = DEFAULT_ALGORITHM) -> CalibrationCache:
    """A cache for symmetric ranges ``amax`` (tensor name -> absolute maximum)."""
    if algorithm not in ALGORITHMS:
        raise ExportError(f"calibration algorithm {algorithm!r} is not supported; use one of {', '.join(ALGORITHMS)}")
    scales = {}
    for name, value in amax.items():
        if not math.isfinite(value):
            raise ExportError(f"tensor {name!r}: activation range {value} is not finite; check the calibration data")
        scales[name] = max(abs(float(value)) / 127.0, MIN_SCALE)
    return CalibrationCache(version_number(tensorrt_version), algorithm, scales)


def write_cache(path: str | Path, amax: dict[str, float], tensorrt_version: str = DEFAULT_TENSORRT,
                algorithm: str = DEFAULT_ALGORITHM) -> Path:
    """Write a TensorRT calibration cache for ``amax`` (atomically); returns the path."""
    cache = from_amax(amax, tensorrt_version, algorithm)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(cache.to_text(), encoding="ascii")
    return path


def parse_cache(text: str | bytes, source: str = "calibration cache") -> CalibrationCache:
    """Parse TensorRT's text format; an ExportError names the file and line that does not fit it."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise ExportError(f"{source}: not a TensorRT calibration cache (not ASCII text)") from None
    lines = text.splitlines()
    header = lines[0].strip() if lines else ""
    parts = header.split("-", 2)
    if len(parts) != 3 or parts[0] != "TRT" or not parts[1].isdigit() or parts[2] not in ALGORITHMS:
        raise ExportError(f"{source}: line 1 {header!r} is not a TensorRT cache header "
                          f"(TRT-<version>-<algorithm>, e.g. TRT-100300-EntropyCalibration2)")
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(": ")
        try:
            if not sep or not name or len(value.strip()) != 8:
                raise ValueError
            scales[name] = struct.unpack(">f", bytes.fromhex(value.strip()))[0]
        except ValueError:
            raise ExportError(f"{source}: line {number} {line[:80]!r} is not '<tensor>: <8 hex digits>'") from None
    return CalibrationCache(int(parts[1]), parts[2], scales)


def read_cache(path: str | Path) -> CalibrationCache:
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"--calib-cache {path}: no such file")
    return parse_cache(path.read_bytes(), str(path))


def retarget(cache: CalibrationCache, tensorrt_version: str, algorithm: str = DEFAULT_ALGORITHM) -> CalibrationCache:
    """The same scales under the header another TensorRT version (and calibrator algorithm) accepts."""
    return CalibrationCache(version_number(tensorrt_version), algorithm, dict(cache.scales))


def cache_path_for(onnx_path: str | Path) -> Path:
    """``model.int8.qdq.onnx`` -> ``model.int8.calib`` (next to the Q/DQ graph)."""
    name = Path(onnx_path).name.removesuffix(".onnx").removesuffix(".qdq")
    return Path(onnx_path).with_name(name + SUFFIX)
