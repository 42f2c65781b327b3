"""Scores and comparisons of exported models, every model run through ``edgefer.runtime`` (the backend its
file suffix names, opened with the deployment settings): logit differences, top-1 agreement with the FP32
reference, accuracy and macro-F1, batch-1 latency.

Accuracy checks run OpenVINO with ``INFERENCE_PRECISION_HINT=f32`` (``CHECK_PRECISION``): otherwise CPUs with
AMX/AVX512-BF16 execute the graph in bf16 and the check would measure the CPU's choice instead of the
exported file. Latency (``latency_ms``) uses the runtime's defaults, i.e. what ``EmotionRecognizer`` runs.
What executed is read back from the runtime (``Backend.precision``: OpenVINO's compiled model says f32, bf16 or
f16) and recorded: ``check_against`` adds it to the check, ``executed_precision`` adds what the runtime's
defaults execute on this machine (export.json ``executed_precision``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..metrics import agreement
from ..preprocess import prepare
from ..progress import progress
from ..spec import ModelSpec

CHECK_BATCH = 64
CHECK_PRECISION = {"openvino": "f32"}  # backend -> precision option for accuracy checks
LATENCY_RUNS, LATENCY_WARMUP, LATENCY_SECONDS = 30, 5, 0.25  # at least 30 runs and 0.25 s (tiny models: more runs)


def open_model(model_path: str | Path, *, for_accuracy: bool = True, threads: int | None = None):
    """The runtime backend for a model file (``edgefer.runtime.open_backend``)."""
    from ..runtime.base import backend_name, open_backend

    name = backend_name(model_path)
    precision = CHECK_PRECISION.get(name) if for_accuracy else None
    return open_backend(model_path, name, threads=threads, precision=precision)


def runtime_info(model_path: str | Path) -> dict:
    """How the checks ran a model file (recorded in export.json)."""
    from ..runtime.base import backend_name

    name = backend_name(model_path)
    precision = CHECK_PRECISION.get(name)
    return {"runtime": name, **({"inference_precision_hint": precision} if precision else {})}


def logits(model_path: str | Path, images: np.ndarray, spec: ModelSpec, batch_size: int = CHECK_BATCH,
           desc: str = "") -> np.ndarray:
    """Logits of the model file on uint8 images (N, H, W), prepared with ``edgefer.preprocess.prepare``."""
    return _logits(model_path, images, spec, batch_size, desc)[0]


def _logits(model_path, images, spec, batch_size: int = CHECK_BATCH, desc: str = "") -> tuple[np.ndarray, str]:
    """``logits`` and the precision that executed them (``Backend.precision``)."""
    backend = open_model(model_path)
    try:
        starts = range(0, len(images), batch_size)
        outputs = [backend.run(prepare(images[s : s + batch_size], spec, color="gray"))
                   for s in progress(starts, total=len(starts), desc=desc or f"check {Path(model_path).name}")]
        executed = backend.precision
    finally:
        backend.close()
    return np.concatenate(outputs).astype(np.float32, copy=False), executed


def executed_precision(model_path: str | Path, checked: str | None = None) -> dict:
    """What executes a model file (export.json ``executed_precision``): ``default``, what the runtime's defaults
    execute on this machine (what ``EmotionRecognizer.open`` deploys; OpenVINO: read from the compiled model, an
    INT8 IR's float layers), and ``checks``, what the export's accuracy checks executed (``checked``)."""
    backend = open_model(model_path, for_accuracy=False)
    try:
        default, runtime, device = backend.precision, backend.name, backend.device
    finally:
        backend.close()
    return {"runtime": runtime, "device": device, "default": default, "checks": checked or default}


def latency_ms(model_path: str | Path) -> float:
    """Median batch-1 latency (ms) of a model file as the runtime deploys it (CPU): at least LATENCY_RUNS runs
    and LATENCY_SECONDS of them (at most 1000 runs)."""
    backend = open_model(model_path, for_accuracy=False)
    try:
        x = np.zeros((1, *backend.sample_shape), np.float32)
        for _ in range(LATENCY_WARMUP):
            backend.run(x)
        times: list[float] = []
        while len(times) < LATENCY_RUNS or (sum(times) < LATENCY_SECONDS and len(times) < 1000):
            clock = time.perf_counter()
            backend.run(x)
            times.append(time.perf_counter() - clock)
    finally:
        backend.close()
    return round(float(np.median(times)) * 1000, 4)


def compare(reference: np.ndarray, other: np.ndarray) -> dict:
    """Max and mean |logit difference| and top-1 agreement of ``other`` against ``reference``."""
    diff = np.abs(np.asarray(reference, np.float64) - np.asarray(other, np.float64))
    return {
        "n": int(len(reference)),
        "max_abs_logit_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_logit_diff": float(diff.mean()) if diff.size else 0.0,
        "top1_agreement": agreement(reference.argmax(1), other.argmax(1)),
    }


def match_labels(data_classes, model_labels):
    """Data classes matched onto a model's labels BY NAME, never by position (``edgefer.labels.match_labels``:
    "anger" is "angry"); scores are computed over the shared classes (``edgefer.metrics.report_by_name``)."""
    from ..labels import match_labels as match_by_name

    return match_by_name(data_classes, model_labels)


def is_identity(match) -> bool:
    """The data classes are the model's labels in the same order (nothing mapped or left out)."""
    n = len(match.shared)
    return len(match.data_classes) == len(match.model_labels) == n and \
        tuple(match.data_columns) == tuple(match.model_columns) == tuple(range(n))


def shared_rows(match, labels) -> np.ndarray:
    """Mask of the images whose class the model has."""
    return np.isin(np.asarray(labels), list(match.data_columns))


def shared_predictions(match, model_outputs: np.ndarray) -> np.ndarray:
    """Top-1 predictions as positions in ``match.shared`` (the best of the shared classes' outputs)."""
    return np.asarray(model_outputs)[:, list(match.model_columns)].argmax(1)


def report_by_name(match, labels, model_outputs: np.ndarray) -> dict:
    """``edgefer.metrics.report_by_name``: the classification report over the shared classes."""
    from ..metrics import report_by_name as report

    return report(labels, model_outputs, match)


def describe_match(match) -> dict:
    return {"matched_by": "name", "shared": list(match.shared), "data_only": list(match.data_only),
            "model_only": list(match.model_only),
            "scored_over": "all classes" if is_identity(match) else "shared classes"}


def scores(model_logits: np.ndarray, labels, spec: ModelSpec, classes=None) -> dict:
    """Accuracy and macro-F1 (``edgefer.metrics``) of model outputs against true labels; ``classes``: the data's
    class names (default: the model's labels, i.e. the same order), matched by name (``match_labels``)."""
    match = match_labels(spec.labels if classes is None else classes, spec.labels)
    report = report_by_name(match, labels, model_logits)
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}


def evaluate(model_path: str | Path, images: np.ndarray, labels, spec: ModelSpec, classes=None) -> dict:
    """Full classification report of a model file on labelled uint8 images (classes matched by name)."""
    match = match_labels(spec.labels if classes is None else classes, spec.labels)
    return report_by_name(match, labels, logits(model_path, images, spec))


def check_against(model_path: str | Path, reference: np.ndarray, images: np.ndarray, labels, spec: ModelSpec,
                  reference_scores: dict | None = None, classes=None) -> dict:
    """Agreement of a model file with the FP32 reference logits, plus its accuracy/macro-F1 (and the drop)."""
    out, executed = _logits(model_path, images, spec)
    result = {**compare(reference, out), "executed_precision": executed}
    if labels is not None:
        result.update(scores(out, labels, spec, classes))
        if reference_scores:
            result["macro_f1_drop"] = reference_scores["macro_f1"] - result["macro_f1"]
            result["accuracy_drop"] = reference_scores["accuracy"] - result["accuracy"]
    return result
