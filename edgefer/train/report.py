"""Run reports: per-epoch metrics (JSONL + CSV), per-class tables and confusion-matrix plots."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..errors import require
from ..fileio import atomic_path, write_json, write_text

METRICS_JSONL, METRICS_CSV = "metrics.jsonl", "metrics.csv"


class EpochLog:
    """Per-epoch records, rewritten atomically as ``metrics.jsonl`` and ``metrics.csv`` after each epoch."""

    def __init__(self, directory: str | Path, completed_epochs: int = 0):
        """Start empty, or (on resume) keep the records of the first ``completed_epochs`` epochs."""
        self.directory = Path(directory)
        self.records: list[dict] = []
        path = self.directory / METRICS_JSONL
        if completed_epochs and path.is_file():
            records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
            self.records = [r for r in records if r["epoch"] <= completed_epochs]

    def append(self, record: dict) -> None:
        """Add one epoch's record; the columns keep the trainer's order (that of the newest record), also
        after --resume, whose earlier records come back from the JSONL file."""
        self.records.append(record)
        write_text(self.directory / METRICS_JSONL, "".join(json.dumps(r) + "\n" for r in self.records))
        columns = list(dict.fromkeys([*record, *(key for r in self.records for key in r)]))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.records)
        write_text(self.directory / METRICS_CSV, buffer.getvalue())


def format_report(report: dict, title: str = "") -> str:
    """A plain-text table: accuracy, macro-F1 and per-class precision/recall/F1/support."""
    lines = [title] if title else []
    lines.append(f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  (n={report['n']})")
    lines.append(f"{'class':<10} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}")
    for name, row in report["per_class"].items():
        lines.append(f"{name:<10} {row['precision']:>9.4f} {row['recall']:>9.4f} {row['f1']:>9.4f} {row['support']:>8d}")
    return "\n".join(lines)


def save_confusion_png(report: dict, path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix with counts, as a PNG."""
    require("matplotlib", "train", "plotting the confusion matrix")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(report["confusion_matrix"], dtype=np.int64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    labels = report["labels"]
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=100)
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    scores = f"accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f} (n={report['n']})"
    ax.set_title(f"{title}\n{scores}" if title else scores)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{counts[i, j]}", ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_evaluation(report: dict, json_path: str | Path, title: str = "", **extra) -> tuple[Path, Path]:
    """Write the metrics JSON and, beside it, ``<stem>_confusion.png``; return both paths."""
    json_path = Path(json_path)
    write_json(json_path, {**extra, **report})
    png = save_confusion_png(report, confusion_png_path(json_path), title)
    return json_path, png


def confusion_png_path(json_path: str | Path) -> Path:
    """Where ``write_evaluation`` puts the confusion matrix PNG of ``json_path``."""
    json_path = Path(json_path)
    return json_path.with_name(json_path.stem + "_confusion.png")


CURVE_COLUMNS = (("epoch", "epoch", "{:d}"), ("step", "step", "{:d}"), ("lr", "lr", "{:.1e}"),
                 ("train_loss", "loss", "{:.3f}"), ("train_accuracy", "train-acc", "{:.3f}"),
                 ("val_accuracy", "val-acc", "{:.3f}"), ("val_macro_f1", "val-F1", "{:.3f}"),
                 ("train_seconds", "seconds", "{:.0f}"))


def format_curve(records: list[dict]) -> str:
    """The learning curve as a compact table, one row per epoch record."""
    header = "  ".join(f"{title:>9}" for _, title, _ in CURVE_COLUMNS)
    rows = ["  ".join(f"{fmt.format(r[key]):>9}" for key, _, fmt in CURVE_COLUMNS) for r in records]
    return "\n".join(["learning curve", header, *rows])
