"""``EmotionRecognizer``: face crops or frames in, emotions and probabilities out, for any backend."""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError
from ..preprocess import prepare_batch, split_faces
from ..spec import ModelSpec
from .base import Backend, open_backend
from .predictions import Face, FramePrediction, Prediction


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32 (a new array; ``logits`` is left as is)."""
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class OutputKindWarning(UserWarning):
    """A model's declared output kind contradicts the outputs it returns (one line, located at the model file)."""


RANGE_SLACK = 1e-3  # outputs this far outside [0, 1] still count as in it (fp16 / INT8 rounding)
SUM_SLACK = 1e-2  # rows summing to 1 within this are probabilities


def detect_output_kind(outputs: np.ndarray) -> tuple[str, str]:
    """What raw model outputs (N, K) are, with the evidence in words: "probabilities" (every value in [0, 1] and
    every row summing to 1), "sigmoid" (in [0, 1], rows not summing to 1) or "logits" (anything else)."""
    o = np.asarray(outputs, np.float64)
    lo, hi = float(o.min()), float(o.max())
    if lo < -RANGE_SLACK or hi > 1 + RANGE_SLACK:
        return "logits", f"values in [{lo:.3g}, {hi:.3g}], outside [0, 1]"
    sums = o.sum(axis=1)
    off = float(np.abs(sums - 1).max())
    if off <= SUM_SLACK:
        return "probabilities", f"every value in [0, 1] and every row summing to 1 (within {off:.1g})"
    return "sigmoid", f"every value in [0, 1], rows summing to {sums.min():.3g}..{sums.max():.3g}"


def _contradicts(declared: str, detected: str) -> bool:
    """Logits may fall in [0, 1]; probabilities must sum to 1; sigmoid scores must stay in [0, 1]."""
    return {"logits": detected == "probabilities", "probabilities": detected != "probabilities",
            "sigmoid": detected == "logits"}.get(declared, False)


def probabilities(outputs: np.ndarray, kind: str, source: str = "model") -> np.ndarray:
    """Row-wise probabilities (N, K) summing to 1 from a model's raw outputs of ``kind`` (``ModelSpec.output``):
    softmax of logits; probabilities renormalised (clipped at 0, so rounding in fp16/INT8 models cannot leave a
    row summing to 0.998); sigmoid scores (independent per class) clipped to 0..1 and divided by their sum,
    so they read as a distribution over the classes (a row of zeros becomes uniform). Never a softmax over
    probabilities. Non-finite outputs are a ModelError naming ``source``."""
    outputs = np.asarray(outputs, np.float32)
    if not np.isfinite(outputs).all():
        rows = np.flatnonzero(~np.isfinite(outputs).all(axis=1)).tolist()
        raise ModelError(f"{source}: the model returned NaN or infinite outputs for face(s) {rows[:10]}")
    if kind == "auto":
        kind = detect_output_kind(outputs)[0]
    if kind == "logits":
        return softmax(outputs)
    p = np.clip(outputs, 0.0, 1.0 if kind == "sigmoid" else None)
    total = p.sum(axis=1, keepdims=True)
    empty = total[:, 0] <= 0
    if empty.any():
        p[empty], total[empty] = 1.0, p.shape[1]
    return p / total


class EmotionRecognizer:
    """A model file opened for inference, with its preprocessing spec.

    Thread safety: one recognizer may be shared by several threads; ``predict``/``predict_frame``/``run``
    can be called concurrently (ONNX Runtime sessions are thread-safe, OpenVINO takes an idle InferRequest
    per call, TensorRT serialises calls on its execution context). The input buffer is per thread.
    A face detector passed to ``open`` is shared too; OpenCV's cascade is used under a lock.

    Pipelining: ``predict_async`` / ``predict_frame_async`` return a ``concurrent.futures.Future`` at once and
    run the whole call (checks, preprocessing, inference, probabilities) on ``async_workers`` threads, so a
    camera loop overlaps capture, preprocessing, inference and drawing across frames.
    """

    def __init__(self, backend: Backend, detector=None, async_workers: int = 2):
        if not isinstance(async_workers, int) or async_workers < 1:
            raise InputError(f"async_workers must be a positive integer, got {async_workers!r}")
        self.backend = backend
        self.spec: ModelSpec = backend.spec
        self.labels: list[str] = list(backend.spec.labels)
        self.detector = detector
        self.async_workers = async_workers
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # what the outputs are: {"kind", "source": "declared" | "detected", "evidence"}, settled on the first
        # finite outputs (``spec.output`` "auto" becomes the detected kind)
        self.output_kind: dict | None = None

    @classmethod
    def open(
        cls,
        path: str | Path,
        backend: str | None = None,
        device: str | None = None,
        threads: int | None = None,
        precision: str | None = None,
        *,
        sidecar: str | Path | None = None,
        detector=None,
        async_workers: int = 2,
    ) -> EmotionRecognizer:
        """Open a model: the backend comes from ``backend`` (onnxruntime/onnx, openvino/ov, tensorrt/trt) or
        the suffix (.onnx, .xml, .engine/.plan). The labels and preprocessing come from the model's own
        metadata, or from ``sidecar`` / ``<model>.json``. ``device``: "cpu" (default) or "cuda" for ONNX
        Runtime, an OpenVINO device name ("CPU", "GPU", ...), "cuda[:N]" for TensorRT (the default there).
        ``precision`` (OpenVINO only): "f32", "bf16" or "f16"; an fp32 model runs in f32 by default.
        ``detector``: a callable frame -> list of (x, y, w, h) boxes for ``predict_frame``.
        ``async_workers``: threads behind ``predict_async`` / ``predict_frame_async`` (calls in flight at once).
        """
        return cls(open_backend(path, backend, device=device, threads=threads, precision=precision,
                                sidecar=sidecar), detector=detector, async_workers=async_workers)

    def predict(self, faces, color: str = "bgr", return_logits: bool = False) -> Prediction:
        """Classify one face crop or a batch: uint8 (or float 0..255) gray (H, W), colour (H, W, 3) in
        ``color`` order ('bgr', 'rgb' or 'gray'), a batch (N, H, W[, C]) or a list of crops of any sizes.
        A (3, H, W) array is refused as ambiguous (pass 3 faces as a list or (3, H, W, 1)). ``probs`` are
        probabilities for every kind of model output (``spec.output``)."""
        batch, _ = split_faces(faces, channels_first_check=True)
        x = prepare_batch(batch, self.spec, color=color, out=self._buffer(len(batch)))
        logits = self.backend.run(x)
        probs = probabilities(logits, self._settle_output(logits), str(self.backend.path))
        indices = probs.argmax(axis=1)
        labels = [self.labels[i] for i in indices]
        return Prediction(labels, indices, probs, self.spec.labels, logits if return_logits else None)

    def predict_frame(self, frame, detector=None, color: str = "bgr", min_size: int = 24,
                      return_logits: bool = False) -> FramePrediction:
        """Find faces in ``frame`` (H, W) or (H, W, 3) with ``detector`` (default: the one given to ``open``,
        else OpenCV's Haar cascade) and classify each; boxes smaller than ``min_size`` pixels are ignored."""
        if not isinstance(frame, np.ndarray):
            raise InputError(f"predict_frame takes one frame as a numpy array (H, W) or (H, W, 3), "
                             f"got a {type(frame).__name__}")
        image, single = split_faces(frame)
        if not single:
            raise InputError(f"predict_frame takes one frame (H, W) or (H, W, 3), got shape {np.shape(frame)}")
        frame = image[0]
        detect = detector or self._default_detector()
        boxes = [b for b in _clipped_boxes(detect(frame), frame.shape) if min(b[2], b[3]) >= min_size]
        if not boxes:
            return FramePrediction(faces=[])
        crops = [frame[y : y + h, x : x + w] for x, y, w, h in boxes]
        pred = self.predict(crops, color=color, return_logits=return_logits)
        faces = [Face(box, label, float(pred.probs[i, pred.indices[i]]), pred.probs[i])
                 for i, (box, label) in enumerate(zip(boxes, pred.labels))]
        return FramePrediction(faces=faces, prediction=pred)

    def video(self, smoothing: str = "ema", frames: int = 5, iou_threshold: float = 0.3, max_missed: int = 15,
              detector=None, min_size: int = 24, color: str = "bgr"):
        """A ``VideoSession`` for one video stream (``edgefer.runtime.video``): ``session.update(frame)`` finds,
        tracks and classifies the faces of each frame, each with a stable ``track`` id and its probabilities
        smoothed over its track (``smoothing`` "ema", "window" or "none" over ``frames`` frames)."""
        from .video import VideoSession

        return VideoSession(self, smoothing=smoothing, frames=frames, iou_threshold=iou_threshold,
                            max_missed=max_missed, detector=detector, min_size=min_size, color=color)

    def predict_async(self, faces, color: str = "bgr", return_logits: bool = False) -> Future:
        """``predict`` without waiting: a ``concurrent.futures.Future`` whose ``result()`` is the Prediction, or
        raises what ``predict`` would (InputError for bad faces, ...). The faces are copied first, so the caller
        may reuse its frame buffer at once. Each future holds the results of its own call, in input order."""
        return self._submit(self.predict, _snapshot(faces), color=color, return_logits=return_logits)

    def predict_frame_async(self, frame, detector=None, color: str = "bgr", min_size: int = 24,
                            return_logits: bool = False) -> Future:
        """``predict_frame`` without waiting: a Future of the FramePrediction (the frame is copied first)."""
        return self._submit(self.predict_frame, _snapshot(frame), detector=detector, color=color, min_size=min_size,
                            return_logits=return_logits)

    def _submit(self, fn, *args, **kwargs) -> Future:
        with self._pool_lock:
            if self.backend.closed:
                raise ModelError(f"{self.backend.path}: this model was closed")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.async_workers, thread_name_prefix="edgefer-predict")
            return self._pool.submit(fn, *args, **kwargs)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Raw backend call: the model's float32 outputs (N, K) for prepared float32 NCHW input (see ``prepare``),
        whatever the model's layout; ``probabilities(outputs, recognizer.spec.output)`` turns them into probs."""
        outputs = self.backend.run(x)
        self._settle_output(outputs)
        return outputs

    def _settle_output(self, outputs: np.ndarray) -> str:
        """The output kind for ``outputs``: on the first finite outputs, a kind the spec does not declare is
        detected (``detect_output_kind``) and kept in ``spec.output``; a declared kind the outputs contradict
        stays, with one ``OutputKindWarning``."""
        if self.output_kind is not None or not outputs.size or not np.isfinite(outputs).all():
            return self.spec.output
        detected, evidence = detect_output_kind(outputs)
        declared = self.spec.output
        if declared == "auto":
            self.spec = self.spec.replace(output=detected)
            self.output_kind = {"kind": detected, "source": "detected", "evidence": evidence}
        else:
            self.output_kind = {"kind": declared, "source": "declared", "evidence": evidence}
            if _contradicts(declared, detected):
                warnings.warn_explicit(
                    f"the spec declares output '{declared}' but the first outputs look like {detected} ({evidence}); "
                    f"kept '{declared}' (set \"output\" in the spec to change it)", OutputKindWarning,
                    str(self.backend.path), 0)
        return self.spec.output

    def close(self) -> None:
        """Finish the calls in flight (``predict_async``), then release the model."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self.backend.close()

    def __enter__(self) -> EmotionRecognizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<EmotionRecognizer {self.backend!r} labels={self.labels}>"

    def _buffer(self, n: int) -> np.ndarray:
        """This thread's input buffer for a batch of ``n`` (reused while the batch size stays the same)."""
        buf = getattr(self._local, "buffer", None)
        if buf is None or len(buf) != n:
            buf = self._local.buffer = np.empty((n, *self.backend.sample_shape), np.float32)
        return buf

    def _default_detector(self):
        if self.detector is None:
            from .faces import default_detector

            self.detector = default_detector()
        return self.detector


def _snapshot(faces):
    """A private copy of the pixel arrays in ``faces`` (an array, or a list/tuple of them); anything else as is
    (``predict`` then reports it)."""
    if isinstance(faces, np.ndarray):
        return faces.copy()
    if isinstance(faces, (list, tuple)):
        return [f.copy() if isinstance(f, np.ndarray) else f for f in faces]
    return faces


def _clipped_boxes(detected, shape) -> list[tuple[int, int, int, int]]:
    """A detector's boxes (x, y, w, h) as ints clipped to the frame; anything but an iterable of 4 finite
    numbers each (a list, an (N, 4) array; empty for no face) is an InputError naming what came back."""
    if detected is None or isinstance(detected, (str, bytes, dict)) or not hasattr(detected, "__iter__"):
        raise InputError(f"the face detector returned {type(detected).__name__}; expected a list of (x, y, w, h) "
                         "boxes (an empty list when there is no face)")
    boxes = []
    for i, box in enumerate(detected):
        try:
            values = np.asarray(box, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            values = None
        if values is None or values.size != 4:
            raise InputError(f"face detector box {i}: {_short_repr(box)} is not 4 numbers (x, y, w, h)")
        if not np.isfinite(values).all():
            raise InputError(f"face detector box {i}: {values.tolist()} has NaN or infinite values")
        boxes.append(_clip(values, shape))
    return boxes


def _short_repr(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(box, shape) -> tuple[int, int, int, int]:
    """(x, y, w, h) as ints, clipped to the frame."""
    x, y, w, h = (int(round(float(v))) for v in box)
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, shape[1]), min(y + h, shape[0])
    return x0, y0, max(x1 - x0, 0), max(y1 - y0, 0)
