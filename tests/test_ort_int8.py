"""INT8 ONNX for ONNX Runtime's CPU kernels (edgefer.export.ort_int8), run through edgefer.runtime."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.backends import needs_onnxruntime, needs_torch

pytestmark = [needs_torch, needs_onnxruntime]

# Top-1 agreement with FP32 on 300 synthetic faces, tiny random-init test_efficientnet (logits spread x200):
# measured 0.94 (QDQ and QOperator, reduce_range) on an AVX2 AMD EPYC; 0.74 with 8-bit weights (saturation).
MIN_AGREEMENT = 0.85


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from edgefer.data import synthesize
    from edgefer.export.calibration import draw
    from tests.runtime_models import export_tiny

    exported = export_tiny(tmp_path_factory.mktemp("ort_int8"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rare classes below the calibration floor in 300 images
        calib = draw(synthesize(300, seed=1), 128, floor=4)
    return exported, calib, synthesize(300, seed=2)


@pytest.mark.parametrize("fmt, fused", [("qdq", "QuantizeLinear"), ("qoperator", "QLinearConv")])
def test_int8_agrees_with_fp32_through_the_runtime(tiny, tmp_path, fmt, fused):
    from edgefer.export.ort_int8 import OrtInt8Config, quantize_for_ort_cpu
    from edgefer.runtime import EmotionRecognizer

    exported, calib, test = tiny
    out = tmp_path / f"model.{fmt}.onnx"
    result = quantize_for_ort_cpu(exported.onnx, out, calib, OrtInt8Config(format=fmt))
    assert result.path == out and out.is_file() and result.calib_images == 128
    assert result.pools_rewritten >= 1 and "ReduceMean" not in result.op_counts  # SE pools -> GlobalAveragePool
    assert result.op_counts.get(fused, 0) > 0
    fp32 = EmotionRecognizer.open(exported.onnx).predict(test.images, color="gray")
    int8_model = EmotionRecognizer.open(out)
    assert int8_model.spec.precision == "int8"
    assert int8_model.spec.extra["quantization"]["config_format"] == fmt
    int8 = int8_model.predict(test.images, color="gray")
    agreement = float(np.mean(int8.indices == fp32.indices))
    assert agreement >= MIN_AGREEMENT, f"{fmt}: INT8 agrees with FP32 on {agreement:.3f} of 300 faces"
    assert len(set(fp32.indices.tolist())) >= 4  # the reference spreads over classes, so agreement means something


def test_bad_config_is_one_clear_error(tiny, tmp_path):
    from edgefer.errors import ExportError
    from edgefer.export.ort_int8 import OrtInt8Config, quantize_for_ort_cpu

    exported, calib, _ = tiny
    with pytest.raises(ExportError, match="ONNX Runtime INT8: format 'qlinear' is not supported; use one of qdq, "
                                          "qoperator"):
        quantize_for_ort_cpu(exported.onnx, tmp_path / "x.onnx", calib, OrtInt8Config(format="qlinear"))
    assert not (tmp_path / "x.onnx").exists()
