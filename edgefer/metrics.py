"""Classification metrics (scikit-learn) shared by training, export checks, the INT8 gate and bench."""

from __future__ import annotations

import numpy as np

from .errors import require


def classification_report(y_true, y_pred, labels) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix, as plain JSON."""
    require("sklearn", "train", "computing metrics")
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    idx = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=idx, zero_division=0
    )
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(f1_score(y_true, y_pred, labels=idx, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=idx).tolist(),
        "labels": list(labels),
    }


def agreement(pred_a, pred_b) -> float:
    """Fraction of samples where two models give the same top-1 class."""
    pred_a, pred_b = np.asarray(pred_a), np.asarray(pred_b)
    return float((pred_a == pred_b).mean()) if len(pred_a) else 0.0


def report_by_name(y_true, scores, match) -> dict:
    """``classification_report`` of a model on data whose classes may be named, ordered or numbered
    differently: ``y_true`` indexes ``match.data_classes``, ``scores`` (N, len(model_labels)) are the model's
    outputs, ``match`` an ``edgefer.labels.LabelMatch``. Only the shared classes are scored: images of data
    classes the model lacks are left out, and the prediction is the best-scoring shared class (a model-only
    label is never predicted). Permuting the model's outputs together with its labels gives the same result.
    Adds ``classes_compared``, ``data_only``, ``model_only``, ``excluded`` (images left out) and ``note``."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != len(match.model_labels) or len(scores) != len(y_true):
        raise ValueError(f"scores must be (N={len(y_true)}, {len(match.model_labels)}), got {scores.shape}")
    to_shared = np.full(max(len(match.data_classes), 1), -1)
    to_shared[list(match.data_columns)] = np.arange(len(match.shared))
    truth = to_shared[y_true] if len(y_true) else np.zeros(0, np.int64)
    keep = truth >= 0
    predicted = np.argmax(scores[keep][:, list(match.model_columns)], axis=1) if keep.any() else np.zeros(0, np.int64)
    report = classification_report(truth[keep], predicted, list(match.shared))
    report.update(classes_compared=list(match.shared), data_only=list(match.data_only),
                  model_only=list(match.model_only), excluded=int((~keep).sum()), note=match.note())
    return report
