"""Steady emotions on video: an IoU face tracker and per-track smoothing of probabilities.

Per-frame predictions flicker: the same face changes label from one frame to the next because of small changes
in pose, light and the detector's box. ``VideoSession`` follows each face from frame to frame with a small IoU
tracker and averages each track's probabilities over time, so a face keeps one id and its label changes only
when the model's answer has changed for a few frames:

    from edgefer.runtime import EmotionRecognizer
    from edgefer.runtime.video import VideoSession

    session = VideoSession(EmotionRecognizer.open("fer.onnx"), smoothing="ema", frames=5)
    for frame in frames:
        for face in session.update(frame).faces:      # TrackedFace: the same face keeps its face.track id
            print(face.track, face.label, face.score)  # smoothed over the track; face.raw_label: this frame's

Smoothing (per track; still images are never smoothed):

- ``"window"``: the mean of the track's last ``frames`` probability vectors. A change of the model's answer
  shows within ``frames`` frames of the track, whatever the probabilities.
- ``"ema"`` (the default): an exponential moving average with ``alpha = 2 / (frames + 1)`` (the span
  convention: the same mean age as a window of ``frames``). A confident change (the new class near 1) shows
  within ``ema_switch_frames(frames)`` <= ``frames`` frames; a hesitant one takes longer.
- ``"none"``: the frame's own probabilities (tracking only).

Only numpy and the standard library are imported. A session holds the state of one video stream: use one
session per stream and per thread (the recognizer behind it may be shared).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .predictions import Face, FramePrediction

SMOOTHING = ("ema", "window", "none")


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes (0 when either is empty)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / float(aw * ah + bw * bh - inter)


@dataclass
class _Track:
    id: int
    box: tuple[int, int, int, int]
    missed: int = 0


class IoUTracker:
    """Gives each detected box a track id that stays the same while the face moves.

    Each frame, boxes are matched to the tracks of the previous frames greedily, best IoU first, when their IoU
    is at least ``iou_threshold``; an unmatched box starts a new track (ids 1, 2, 3, ... never reused), and a
    track that has not been matched for more than ``max_missed`` frames in a row is dropped (a face the detector
    misses for a few frames keeps its id)."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 15):
        if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)) \
                or not 0 < iou_threshold <= 1:
            raise InputError(f"iou_threshold must be a number in (0, 1], got {iou_threshold!r}")
        self.iou_threshold = float(iou_threshold)
        self.max_missed = _positive_int("max_missed", max_missed, minimum=0)
        self.tracks: list[_Track] = []
        self._next_id = 1
        self.dropped: list[int] = []  # ids dropped by the last update

    def update(self, boxes) -> list[int]:
        """The track id of each box in ``boxes`` ((x, y, w, h) each), in the same order."""
        boxes = [tuple(int(v) for v in box) for box in boxes]
        pairs = sorted(((iou(track.box, box), t, b) for t, track in enumerate(self.tracks)
                        for b, box in enumerate(boxes)), key=lambda p: (-p[0], p[1], p[2]))
        ids: list[int | None] = [None] * len(boxes)
        matched = set()
        for overlap, t, b in pairs:
            if overlap < self.iou_threshold:
                break
            if t in matched or ids[b] is not None:
                continue
            matched.add(t)
            track = self.tracks[t]
            track.box, track.missed, ids[b] = boxes[b], 0, track.id
        for t, track in enumerate(self.tracks):
            if t not in matched:
                track.missed += 1
        self.dropped = [track.id for track in self.tracks if track.missed > self.max_missed]
        self.tracks = [track for track in self.tracks if track.missed <= self.max_missed]
        for b, box in enumerate(boxes):
            if ids[b] is None:
                self.tracks.append(_Track(self._next_id, box))
                ids[b] = self._next_id
                self._next_id += 1
        return ids

    def reset(self) -> None:
        self.tracks, self._next_id, self.dropped = [], 1, []


def ema_switch_frames(frames: int) -> int:
    """Frames after which the EMA with ``alpha = 2 / (frames + 1)`` has moved more than half way to a new,
    constant input: a confident label change (new class near probability 1) shows within this many frames."""
    alpha = 2.0 / (frames + 1)
    return 1 if alpha >= 1 else math.floor(math.log(0.5) / math.log(1 - alpha)) + 1


@dataclass
class ProbabilitySmoother:
    """Per-key (track id) smoothing of probability vectors: ``smooth(key, probs) -> smoothed probs``."""

    mode: str = "ema"
    frames: int = 5
    _state: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.mode not in SMOOTHING:
            raise InputError(f"smoothing must be one of {', '.join(SMOOTHING)}, got {self.mode!r}")
        self.frames = _positive_int("frames", self.frames)

    @property
    def alpha(self) -> float:
        return 2.0 / (self.frames + 1)

    @property
    def switch_frames(self) -> int:
        """Frames within which a sustained, confident change of the per-frame label shows in the smoothed one."""
        if self.mode == "none":
            return 1
        return self.frames if self.mode == "window" else ema_switch_frames(self.frames)

    def smooth(self, key, probs: np.ndarray) -> np.ndarray:
        probs = np.asarray(probs, np.float32)
        if self.mode == "none":
            return probs
        if self.mode == "window":
            window = self._state.get(key)
            if window is None:
                window = self._state[key] = deque(maxlen=self.frames)
            window.append(probs)
            return np.mean(window, axis=0, dtype=np.float32)
        previous = self._state.get(key)
        value = probs.copy() if previous is None else previous + np.float32(self.alpha) * (probs - previous)
        self._state[key] = value
        return value

    def forget(self, keys) -> None:
        for key in keys:
            self._state.pop(key, None)

    def reset(self) -> None:
        self._state.clear()


@dataclass(frozen=True)
class TrackedFace(Face):
    """A face on video: ``label``, ``score`` and ``probs`` smoothed over its track; ``track`` its tracker id,
    ``raw_label`` the label of this frame alone."""

    track: int = 0
    raw_label: str = ""

    def to_dict(self, class_names) -> dict:
        d = super().to_dict(class_names)
        return {"box": d.pop("box"), "track": self.track, **d, "raw_label": self.raw_label}


class VideoSession:
    """Frames of one video stream in, tracked faces with smoothed emotions out (see the module docstring).

    ``update(frame)`` returns a ``FramePrediction`` whose ``faces`` are ``TrackedFace``s: ``track`` (the
    tracker's id), the smoothed ``label`` / ``score`` / ``probs`` and ``raw_label``; its ``prediction`` holds the
    frame's own (raw) results in the same order. ``recognizer`` is an ``EmotionRecognizer`` (shared is fine);
    ``detector``, ``min_size`` and ``color`` are passed to its ``predict_frame``."""

    def __init__(self, recognizer, smoothing: str = "ema", frames: int = 5, iou_threshold: float = 0.3,
                 max_missed: int = 15, detector=None, min_size: int = 24, color: str = "bgr"):
        self.recognizer = recognizer
        self.smoother = ProbabilitySmoother(smoothing, frames)
        self.tracker = IoUTracker(iou_threshold, max_missed)
        self.detector, self.min_size, self.color = detector, min_size, color
        self.frames_seen = 0

    def update(self, frame, return_logits: bool = False) -> FramePrediction:
        result = self.recognizer.predict_frame(frame, detector=self.detector, color=self.color,
                                               min_size=self.min_size, return_logits=return_logits)
        self.frames_seen += 1
        ids = self.tracker.update([face.box for face in result.faces])
        self.smoother.forget(self.tracker.dropped)
        labels = self.recognizer.labels
        faces = []
        for track, face in zip(ids, result.faces):
            probs = self.smoother.smooth(track, face.probs)
            index = int(np.argmax(probs))
            faces.append(TrackedFace(face.box, labels[index], float(probs[index]), probs, track=track,
                                     raw_label=face.label))
        return FramePrediction(faces=faces, prediction=result.prediction)

    def reset(self) -> None:
        """Forget every track (a new stream, or a cut in the video)."""
        self.tracker.reset()
        self.smoother.reset()
        self.frames_seen = 0


def flicker(labels_by_track) -> tuple[float, int]:
    """Label changes per 100 frames: over every track's labels in frame order ({track: [label, ...]}), the
    number of times the label differs from the track's previous one, per 100 consecutive pairs; and the number
    of pairs it was measured on (0 pairs: 0.0)."""
    changes = pairs = 0
    for labels in labels_by_track.values():
        labels = list(labels)
        pairs += max(len(labels) - 1, 0)
        changes += sum(a != b for a, b in zip(labels, labels[1:]))
    return (100.0 * changes / pairs if pairs else 0.0), pairs
