"""Quantization-aware fine-tuning (QAT) of a trained edgefer checkpoint for TensorRT INT8.

Engine: NVIDIA TensorRT Model Optimizer (``modelopt.torch.quantization``), chosen by measurement (docs/qat.md).
Placement is TensorRT's: fake quantization on the inputs of every Conv2d/Linear (activations per-tensor
symmetric INT8, weights per-output-channel symmetric INT8) and on both inputs of every residual addition; SiLU,
Sigmoid, the squeeze-excite multiply and the pooling stay in floating point for TensorRT to fuse. Steps:
stratified calibration (``edgefer.export.calibration``) -> fine-tune with the run's class-weighted loss and
augmentation (plus distillation from the FP32 checkpoint) -> QAT run directory, Q/DQ ONNX (spec embedded,
verified through ``edgefer.runtime``), OpenVINO INT8 IR (the Q/DQ pairs become FakeQuantize), per-tensor
activation scales (JSON, and a TensorRT calibration cache), and ``qat.json`` with macro-F1 and agreement against
the FP32 checkpoint.

One module per job: ``config`` (``QatConfig``, ``QatResult``: torch-free, so the CLI builds its options without
importing torch), ``training`` (fake quantization, fine-tuning), ``graph`` (Q/DQ ONNX, OpenVINO IR, activation
scales, calibration cache), ``fidelity`` (agreement and macro-F1 against FP32) and ``run`` (``run_qat``). The
package sits below the INT8 search, which runs it as its QAT stage, and imports only export building blocks.
"""

from .config import (
    CACHE_NAME,
    ENGINE,
    FP32_NAME,
    IR_NAME,
    ONNX_NAME,
    QAT_BOUNDS,
    QAT_TOOLS,
    QUANTIZED_LAYERS,
    RESULT_NAME,
    SCALES_NAME,
    WEIGHTS_NAME,
    Fidelity,
    QatConfig,
    QatResult,
)
from .graph import activation_amax, qdq_node_counts, strip_qdq
from .run import run_qat
from .training import count_quantizers, insert_fake_quantization, quantization_config, quantize_residual_adds

__all__ = [
    "CACHE_NAME", "ENGINE", "FP32_NAME", "IR_NAME", "ONNX_NAME", "QAT_BOUNDS", "QAT_TOOLS", "QUANTIZED_LAYERS",
    "RESULT_NAME", "SCALES_NAME", "WEIGHTS_NAME", "Fidelity", "QatConfig", "QatResult", "activation_amax",
    "count_quantizers", "insert_fake_quantization", "qdq_node_counts", "quantization_config",
    "quantize_residual_adds", "run_qat", "strip_qdq",
]
