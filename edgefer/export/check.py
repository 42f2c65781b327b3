"""Run exported graphs on CPU (ONNX Runtime for .onnx, OpenVINO for .xml) and measure what an export
changed: logit differences, top-1 agreement with the FP32 reference, accuracy and macro-F1.

These functions are the building blocks of the export's own check and of an accuracy-gated INT8 loop
(quantize with a setting, ``evaluate``, compare with the FP32 macro-F1, try the next setting).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ExportError, require
from ..metrics import agreement, classification_report
from ..preprocess import prepare
from ..progress import progress
from ..spec import ModelSpec

CHECK_BATCH = 64


def runner(model_path: str | Path, threads: int | None = None):
    """A function ``x (float32 NCHW) -> logits`` for an ONNX file (ONNX Runtime CPU) or an OpenVINO IR.

    OpenVINO runs with ``INFERENCE_PRECISION_HINT=f32``: otherwise CPUs with AMX/AVX512-BF16 execute the
    graph in bf16 and the check would measure the CPU's choice instead of the exported file.
    """
    path = Path(model_path)
    if path.suffix == ".onnx":
        ort = require("onnxruntime", "onnx", "checking ONNX exports")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    if path.suffix == ".xml":
        ov = require("openvino", "openvino", "checking OpenVINO exports")
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        request = compiled.create_infer_request()
        return lambda x: np.array(request.infer({0: x})[compiled.output(0)])
    raise ExportError(f"{path}: cannot check this file type here (expected .onnx or .xml)")


def logits(model_path: str | Path, images: np.ndarray, spec: ModelSpec, batch_size: int = CHECK_BATCH,
           desc: str = "") -> np.ndarray:
    """Logits of the model file on uint8 images (N, H, W), prepared with ``edgefer.preprocess.prepare``."""
    run = runner(model_path)
    starts = range(0, len(images), batch_size)
    outputs = [np.asarray(run(prepare(images[s : s + batch_size], spec, color="gray")), np.float32)
               for s in progress(starts, total=len(starts), desc=desc or f"check {Path(model_path).name}")]
    return np.concatenate(outputs)


def compare(reference: np.ndarray, other: np.ndarray) -> dict:
    """Max and mean |logit difference| and top-1 agreement of ``other`` against ``reference``."""
    diff = np.abs(np.asarray(reference, np.float64) - np.asarray(other, np.float64))
    return {
        "n": int(len(reference)),
        "max_abs_logit_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_logit_diff": float(diff.mean()) if diff.size else 0.0,
        "top1_agreement": agreement(reference.argmax(1), other.argmax(1)),
    }


def scores(model_logits: np.ndarray, labels, spec: ModelSpec) -> dict:
    """Accuracy and macro-F1 (``edgefer.metrics``) of logits against true labels."""
    report = classification_report(labels, model_logits.argmax(1), spec.labels)
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}


def evaluate(model_path: str | Path, images: np.ndarray, labels, spec: ModelSpec) -> dict:
    """Full classification report of a model file on labelled uint8 images."""
    return classification_report(labels, logits(model_path, images, spec).argmax(1), spec.labels)


def check_against(model_path: str | Path, reference: np.ndarray, images: np.ndarray, labels, spec: ModelSpec,
                  reference_scores: dict | None = None) -> dict:
    """Agreement of a model file with the FP32 reference logits, plus its accuracy/macro-F1 (and the drop)."""
    out = logits(model_path, images, spec)
    result = compare(reference, out)
    if labels is not None:
        result.update(scores(out, labels, spec))
        if reference_scores:
            result["macro_f1_drop"] = reference_scores["macro_f1"] - result["macro_f1"]
            result["accuracy_drop"] = reference_scores["accuracy"] - result["accuracy"]
    return result
