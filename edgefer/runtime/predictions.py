"""What a recognizer returns: ``Prediction`` (a batch of faces), ``Face`` (one detected face) and
``FramePrediction`` (every face of a frame). Plain data on numpy, shared by ``recognizer`` and ``video``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """Results for a batch of N faces, in input order; K = number of classes."""

    labels: list[str]  # predicted label per face
    indices: np.ndarray  # (N,) int64 class index per face
    probs: np.ndarray  # (N, K) float32 probabilities, each row sums to 1 (see ``recognizer.probabilities``)
    class_names: tuple[str, ...]  # the K labels, in output order
    # (N, K) float32 raw model outputs when asked for with return_logits=True: logits, or the probabilities /
    # sigmoid scores of a model whose spec says output="probabilities" / "sigmoid"
    logits: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def scores(self) -> np.ndarray:
        """(N,) probability of each face's predicted label."""
        return self.probs[np.arange(len(self.indices)), self.indices]

    def top(self, k: int = 3) -> list[list[tuple[str, float]]]:
        """Per face, the ``k`` most likely (label, probability) pairs, most likely first."""
        order = np.argsort(-self.probs, axis=1, kind="stable")[:, :k]
        return [[(self.class_names[j], float(row[j])) for j in idx] for row, idx in zip(self.probs, order)]

    def to_dicts(self) -> list[dict]:
        """One JSON-ready dict per face: label, score, probabilities by label (and logits if present)."""
        out = []
        for i, label in enumerate(self.labels):
            d = {"label": label, "score": round(float(self.probs[i, self.indices[i]]), 6),
                 "probs": {name: round(float(p), 6) for name, p in zip(self.class_names, self.probs[i])}}
            if self.logits is not None:
                d["logits"] = [round(float(v), 6) for v in self.logits[i]]
            out.append(d)
        return out


@dataclass(frozen=True)
class Face:
    """One detected face: its box in frame pixels (x, y, width, height) and its prediction."""

    box: tuple[int, int, int, int]
    label: str
    score: float
    probs: np.ndarray  # (K,) float32

    def to_dict(self, class_names) -> dict:
        return {"box": list(self.box), "label": self.label, "score": round(self.score, 6),
                "probs": {name: round(float(p), 6) for name, p in zip(class_names, self.probs)}}


@dataclass(frozen=True)
class FramePrediction:
    """All faces found in a frame; ``faces == []`` when there is none (not an error)."""

    faces: list[Face]
    prediction: Prediction | None = None  # the batched arrays behind ``faces``; None when no face

    def __len__(self) -> int:
        return len(self.faces)

    def to_dicts(self) -> list[dict]:
        names = self.prediction.class_names if self.prediction else ()
        return [face.to_dict(names) for face in self.faces]
