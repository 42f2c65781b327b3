"""OpenVINO IR (FP32 / FP16 weights) from ONNX, and INT8 IR with NNCF post-training quantization.

``quantize_openvino`` is one call per setting (preset, ignored scope, subset size, bias correction), so an
INT8 search can call it in a loop with ``check.evaluate``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from ..errors import ExportError, require
from ..spec import ModelSpec, embed_in_openvino
from .calibration import CalibrationSet
from .config import PRESETS
from .keep_fp import match_nodes


def _ov():
    return require("openvino", "openvino", "OpenVINO export")


@contextlib.contextmanager
def quiet_nncf():
    """NNCF's logs and rich progress bars off (unless ``--verbose``) while NNCF works: edgefer reports the outcome."""
    from .. import logs

    require("nncf", "openvino", "OpenVINO INT8 quantization")
    from nncf.common.logging import track_progress

    logs.quiet_third_party()
    if logs.verbosity() >= logs.VERBOSE:
        yield
        return
    original = track_progress.track.__init__

    def silent(self, *args, **kwargs):
        kwargs["disable"] = True
        original(self, *args, **kwargs)

    track_progress.track.__init__ = silent
    try:
        yield
    finally:
        track_progress.track.__init__ = original


def read_model(model_path: str | Path):
    """An OpenVINO model from an ONNX file (``ov.convert_model``) or an IR ``.xml``."""
    ov = _ov()
    path = Path(model_path)
    return ov.Core().read_model(str(path)) if path.suffix == ".xml" else ov.convert_model(str(path))


def save_ir(ov_model, xml_path: str | Path, spec: ModelSpec, compress_to_fp16: bool) -> Path:
    """Embed ``spec`` in ``rt_info`` and save ``.xml`` + ``.bin`` atomically (bin first, then xml)."""
    ov = _ov()
    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    embed_in_openvino(ov_model, spec)
    with tempfile.TemporaryDirectory(prefix=".ir-", dir=xml_path.parent) as tmp:
        tmp_xml = Path(tmp) / xml_path.name
        ov.save_model(ov_model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
        os.replace(tmp_xml.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(tmp_xml, xml_path)
    return xml_path


def to_ir(onnx_path: str | Path, xml_path: str | Path, spec: ModelSpec, fp16: bool = False) -> dict:
    """Convert ONNX to IR with FP32 weights, or FP16-compressed weights with ``fp16=True``."""
    start = time.perf_counter()
    precision = "fp16" if fp16 else "fp32"
    save_ir(read_model(onnx_path), xml_path, spec.replace(precision=precision), compress_to_fp16=fp16)
    return {"converter": "openvino.convert_model", "weights": precision, "seconds": round(time.perf_counter() - start, 3)}


def resolve_ops(ov_model, patterns) -> list[str]:
    """Friendly names of the ops matching ``patterns`` (fnmatch, or the aliases first-conv / classifier)."""
    ops = [op for op in ov_model.get_ordered_ops() if op.get_type_name() not in ("Constant", "Parameter", "Result")]
    return match_nodes([(op.get_friendly_name(), op.get_type_name()) for op in ops], patterns,
                       conv=("Convolution",), classifier=("MatMul",), noun="OpenVINO op", names="op names", head=3)


def quantize_openvino(
    model_path: str | Path,
    calib: CalibrationSet,
    spec: ModelSpec,
    xml_path: str | Path,
    *,
    preset: str = "mixed",
    keep_fp=(),
    ignored_scope=None,
    subset_size: int | None = None,
    fast_bias_correction: bool = True,
) -> dict:
    """INT8 IR with ``nncf.quantize`` on the OpenVINO model, calibrated on ``calib`` one image at a time.

    ``preset``: mixed (symmetric weights, asymmetric activations; best accuracy) or performance (all
    symmetric). ``keep_fp`` node patterns (and/or an ``nncf.IgnoredScope`` in ``ignored_scope``) stay in
    floating point. ``subset_size`` defaults to the whole calibration set.
    """
    if preset not in PRESETS:
        raise ExportError(f"--preset {preset!r} is not supported; use one of {', '.join(PRESETS)}")
    nncf = require("nncf", "openvino", "OpenVINO INT8 quantization")
    model = read_model(model_path)
    names = resolve_ops(model, keep_fp)
    if ignored_scope is None:
        ignored_scope = nncf.IgnoredScope(names=names)
    elif names:
        ignored_scope = nncf.IgnoredScope(names=[*ignored_scope.names, *names], patterns=ignored_scope.patterns,
                                          types=ignored_scope.types, subgraphs=ignored_scope.subgraphs)
    subset = min(int(subset_size or len(calib)), len(calib))
    if subset < 1:
        raise ExportError(f"--subset-size must be >= 1, got {subset_size}")
    start = time.perf_counter()
    with quiet_nncf():
        quantized = nncf.quantize(
            model, nncf.Dataset(calib.batches(spec, 1)),
            preset=nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
            subset_size=subset, fast_bias_correction=fast_bias_correction, ignored_scope=ignored_scope,
        )
    info = {
        "quantizer": "nncf", "nncf_version": nncf.__version__, "preset": preset, "subset_size": subset,
        "fast_bias_correction": fast_bias_correction, "keep_fp": list(keep_fp), "ignored_nodes": names,
        "calib_images": len(calib), "seconds": round(time.perf_counter() - start, 3),
    }
    save_ir(quantized, xml_path, spec.replace(precision="int8", extra={**spec.extra, "quantization": info}),
            compress_to_fp16=False)
    return info
