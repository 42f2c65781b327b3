"""Face detectors for ``EmotionRecognizer.predict_frame``.

A detector is any callable ``detector(frame) -> list of (x, y, w, h)`` taking a uint8 frame (H, W) or
(H, W, 3). The default is OpenCV's frontal-face Haar cascade, which needs an OpenCV 4.x wheel
(``pip install 'edgefer[camera]'``): opencv-python 5.x ships no cascade files. cv2 is imported only
when a detector is created.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..errors import MissingDependency, ModelError, require

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


class HaarFaceDetector:
    """OpenCV Haar cascade face detector (thread-safe: calls are serialised on one classifier)."""

    def __init__(self, cascade: str | Path | None = None, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_size: int = 24):
        self._cv2 = cv2 = require("cv2", "camera", "face detection")
        path = Path(cascade) if cascade else _bundled_cascade(cv2)
        if not path.is_file():
            raise ModelError(f"{path}: no such Haar cascade file")
        self._classifier = cv2.CascadeClassifier(str(path))
        if self._classifier.empty():
            raise ModelError(f"{path}: OpenCV cannot load this Haar cascade")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size
        self._lock = threading.Lock()

    def __call__(self, frame: np.ndarray) -> list[tuple[int, int, int, int]]:
        cv2 = self._cv2
        if frame.dtype != np.uint8:
            frame = np.clip(frame, 0, 255).astype(np.uint8)
        if frame.ndim == 3:
            frame = frame[..., 0] if frame.shape[-1] == 1 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        gray = np.ascontiguousarray(frame)
        with self._lock:
            boxes = self._classifier.detectMultiScale(gray, scaleFactor=self.scale_factor,
                                                      minNeighbors=self.min_neighbors,
                                                      minSize=(self.min_size, self.min_size))
        return [tuple(int(v) for v in box) for box in boxes]


def default_detector() -> HaarFaceDetector:
    """OpenCV's Haar cascade, or an error that says what to install."""
    return HaarFaceDetector()


def _bundled_cascade(cv2) -> Path:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder or "") / DEFAULT_CASCADE
    if not folder or not path.is_file():
        raise MissingDependency(
            f"OpenCV Haar cascades (cv2 {getattr(cv2, '__version__', '?')} ships none)",
            "camera",
            "the default face detector; or pass detector=",
        )
    return path
