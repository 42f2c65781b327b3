"""How close a quantized model stays to the FP32 checkpoint: logits in PyTorch and through ``edgefer.runtime``
(the deployment path), macro-F1 and top-1 agreement on the evaluation split (``Fidelity``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import Fidelity


def torch_logits(model, images, spec) -> np.ndarray:
    from ..train.evaluation import predict_logits

    return predict_logits(model, images, spec, desc="eval").numpy()


def runtime_logits(model_path: Path, images) -> np.ndarray:
    """Logits through edgefer.runtime (the deployment path), the whole split as one batch per 256 images."""
    from ..runtime import EmotionRecognizer

    recognizer = EmotionRecognizer.open(model_path, threads=1)
    return np.concatenate([recognizer.predict(images[i : i + 256], color="gray", return_logits=True).logits
                           for i in range(0, len(images), 256)])


def macro_f1(labels, predictions, spec) -> float:
    from ..metrics import classification_report

    return float(classification_report(labels, predictions, spec.labels)["macro_f1"])


def measure_fidelity(name, reference, logits, labels, spec, fp32_f1) -> Fidelity:
    from ..metrics import agreement

    predictions = np.asarray(logits).argmax(1)
    f1 = macro_f1(labels, predictions, spec)
    return Fidelity(name, round(float(agreement(reference, predictions)), 6), round(f1, 6),
                    round((fp32_f1 - f1) * 100, 3))
