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
