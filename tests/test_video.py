"""Steady emotions on video: the IoU tracker keeps ids, per-track smoothing switches label within the set number of
frames and cuts flicker, on a generated video of moving faces whose expression changes; `edgefer predict` on a
video writes track ids and smoothed labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgefer.errors import InputError
from edgefer.runtime import EmotionRecognizer
from edgefer.runtime.video import IoUTracker, ProbabilitySmoother, VideoSession, ema_switch_frames, flicker, iou
from edgefer.spec import METADATA_KEY, ModelSpec
from tests.backends import needs_cv2, needs_onnxruntime

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
HAPPY, SAD = LABELS.index("happy"), LABELS.index("sad")
SPEC = ModelSpec(labels=LABELS, input_size=16, channels=1, mean=(0.5,), std=(0.5,))
H, W, SIDE = 120, 200, 32
CHANGE = 60  # face 1's expression changes from happy (bright) to sad (dark) at this frame


# ---- a generated video: two moving faces; the stub model reads a face's brightness as its expression --------------

def face_video(frames: int = 150, noise: float = 0.0, seed: int = 0, drop: tuple[int, ...] = ()):
    """(frames, H, W, 3) uint8 BGR video and the true boxes per frame. Face 1 moves right and down, bright
    (happy) until CHANGE, then dark (sad); face 2 moves left, bright (happy) throughout. ``noise``: the standard
    deviation of each face's brightness from frame to frame (what makes per-frame labels flicker); ``drop``:
    frames in which face 1 is hidden (the detector misses it)."""
    rng = np.random.default_rng(seed)
    video = np.zeros((frames, H, W, 3), np.uint8)
    boxes = []
    for i in range(frames):
        a = (10 + _zigzag(i, 40), 10 + _zigzag(i // 2, 20), SIDE, SIDE)  # columns 10..82
        b = (W - SIDE - 10 - _zigzag(i, 50), 70, SIDE, SIDE)  # columns 108..190
        level_a = (160 if i < CHANGE else 95) + noise * rng.standard_normal()
        level_b = 160 + noise * rng.standard_normal()
        shown = []
        for box, level, visible in ((a, level_a, i not in drop), (b, level_b, True)):
            if visible:
                x, y, w, h = box
                video[i, y:y + h, x:x + w] = np.clip(level, 60, 255)
                shown.append(box)
        boxes.append(shown)
    return video, boxes


def _zigzag(i: int, amplitude: int) -> int:
    """0, 1, ..., amplitude, amplitude - 1, ..., 0, 1, ...: one pixel per frame, back and forth."""
    return amplitude - abs(i % (2 * amplitude) - amplitude)


def blob_detector(frame):
    """The stub face detector: bounding boxes of the bright regions (faces are >= 60 on black, JPEG ringing is
    darker), split where a column has none."""
    gray = (frame.max(axis=2) if frame.ndim == 3 else frame) > 40
    cols = np.flatnonzero(gray.max(axis=0))
    if not len(cols):
        return []
    runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
    boxes = []
    for run in runs:
        rows = np.flatnonzero(gray[:, run[0]:run[-1] + 1].max(axis=1))
        boxes.append((int(run[0]), int(rows[0]), int(run[-1] - run[0] + 1), int(rows[-1] - rows[0] + 1)))
    return boxes


class BrightnessBackend:
    """Stub backend: logits from a face's mean prepared value m (in -1..1): happy 10m + 1, sad -10m + 1, the rest
    0, so faces brighter than 127.5 are happy and darker ones sad, confidently once away from the middle."""

    name, device, precision, closed = "stub", "cpu", "fp32", False
    path = Path("stub.onnx")
    spec = SPEC
    sample_shape = (1, 16, 16)

    def run(self, x):
        m = x.reshape(len(x), -1).mean(axis=1)
        logits = np.zeros((len(x), len(LABELS)), np.float32)
        logits[:, HAPPY], logits[:, SAD] = 10 * m + 1, -10 * m + 1
        return logits

    def close(self):
        self.closed = True


def recognizer():
    return EmotionRecognizer(BrightnessBackend(), detector=blob_detector)


def run_video(video, **kwargs):
    """Per frame, the (track, smoothed label, raw label, box) of each face."""
    session = VideoSession(recognizer(), **kwargs)
    out = []
    for frame in video:
        result = session.update(frame)
        raw = result.prediction.labels if result.prediction else []
        assert [f.raw_label for f in result.faces] == raw  # the frame's own labels, in the same order
        out.append([(f.track, f.label, f.raw_label, f.box) for f in result.faces])
    return out


def by_track(results, which: int = 1):
    """{track: [label per frame it was seen]}; which=1 smoothed, 2 raw."""
    tracks: dict = {}
    for faces in results:
        for face in faces:
            tracks.setdefault(face[0], []).append(face[which])
    return tracks


# ---- tracker ------------------------------------------------------------------------------------------------------

def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_tracker_keeps_ids_through_motion_misses_and_crossing_order():
    tracker = IoUTracker(iou_threshold=0.3, max_missed=2)
    assert tracker.update([(0, 0, 20, 20), (100, 0, 20, 20)]) == [1, 2]
    assert tracker.update([(102, 1, 20, 20), (3, 2, 20, 20)]) == [2, 1]  # order of the boxes does not matter
    assert tracker.update([(104, 2, 20, 20)]) == [2]  # face 1 missed once
    assert tracker.update([(6, 4, 20, 20), (106, 3, 20, 20)]) == [1, 2]  # back: same id
    assert tracker.update([(300, 300, 20, 20)]) == [3]  # a new face: a new id, never a reused one
    for _ in range(3):
        tracker.update([])
    assert tracker.tracks == []
    assert tracker.update([(6, 4, 20, 20)]) == [4]  # gone longer than max_missed: new id


@pytest.mark.parametrize("bad", [dict(iou_threshold=0), dict(iou_threshold=1.5), dict(iou_threshold=float("nan")),
                                 dict(max_missed=-1), dict(max_missed=2.5)])
def test_tracker_arguments_are_checked(bad):
    with pytest.raises(InputError):
        IoUTracker(**bad)


@pytest.mark.parametrize("bad", [dict(mode="median"), dict(frames=0), dict(frames=True), dict(frames=2.0)])
def test_smoother_arguments_are_checked(bad):
    with pytest.raises(InputError):
        ProbabilitySmoother(**bad)


# ---- smoothing ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames", [1, 2, 3, 5, 9, 15, 30])
def test_ema_switch_frames_is_exact_and_within_frames(frames):
    smoother = ProbabilitySmoother("ema", frames)
    a, b = np.eye(2, dtype=np.float32)
    for _ in range(50):
        smoother.smooth(0, a)
    switched = next(k for k in range(1, 100) if smoother.smooth(0, b).argmax() == 1)
    assert switched == ema_switch_frames(frames) == smoother.switch_frames <= frames


def test_window_is_the_mean_of_the_last_frames():
    smoother = ProbabilitySmoother("window", 3)
    rows = np.random.default_rng(0).dirichlet(np.ones(4), size=6).astype(np.float32)
    for i, row in enumerate(rows):
        out = smoother.smooth("t", row)
        np.testing.assert_allclose(out, rows[max(0, i - 2):i + 1].mean(axis=0), atol=1e-6)
    # a change of the per-frame answer shows within `frames` frames even when the new answer is hesitant
    smoother = ProbabilitySmoother("window", 4)
    for _ in range(10):
        smoother.smooth(0, np.array([1.0, 0.0, 0.0], np.float32))
    hesitant = np.array([0.3, 0.4, 0.3], np.float32)
    assert [smoother.smooth(0, hesitant).argmax() for _ in range(4)][-1] == 1


def test_none_passes_probabilities_through_and_tracks_are_independent():
    smoother = ProbabilitySmoother("ema", 5)
    smoother.smooth(1, np.array([1.0, 0.0], np.float32))
    np.testing.assert_array_equal(smoother.smooth(2, np.array([0.0, 1.0], np.float32)), [0.0, 1.0])
    assert ProbabilitySmoother("none").smooth(1, np.array([0.2, 0.8])).tolist() == pytest.approx([0.2, 0.8])


# ---- the generated video ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,frames", [("ema", 5), ("window", 5), ("window", 8), ("ema", 12)])
def test_ids_stay_stable_and_the_label_switches_within_the_set_frames(mode, frames):
    video, truth = face_video(150, drop=(30, 31, 32))
    results = run_video(video, smoothing=mode, frames=frames, max_missed=5)
    for faces, boxes in zip(results, truth):  # every face found, with its box
        assert sorted(f[3] for f in faces) == sorted(boxes)
    tracks = by_track(results)
    assert sorted(tracks) == [1, 2]  # two faces, two ids for the whole video, the hidden frames included
    assert len(tracks[1]) == 150 - 3 and len(tracks[2]) == 150
    assert set(tracks[2]) == {"happy"}
    face1 = [(i, f[1], f[2]) for i, faces in enumerate(results) for f in faces if f[0] == 1]
    raw_switch = next(i for i, _, raw in face1 if raw == "sad")
    assert raw_switch == CHANGE  # the per-frame model follows the change at once
    smooth_switch = next(i for i, label, _ in face1 if label == "sad")
    limit = ProbabilitySmoother(mode, frames).switch_frames
    assert limit <= frames
    assert CHANGE < smooth_switch <= CHANGE + limit - 1  # lags, but by fewer than the set number of frames
    assert all(label == "happy" for i, label, _ in face1 if i < smooth_switch)
    assert all(label == "sad" for i, label, _ in face1 if i >= smooth_switch)  # and stays switched


def test_smoothing_cuts_flicker_on_a_noisy_video():
    video, _ = face_video(300, noise=30.0, seed=1)
    raw = flicker(by_track(run_video(video, smoothing="none"), which=1))
    assert raw == flicker(by_track(run_video(video, smoothing="ema"), which=2))  # the raw labels are the same
    smoothed = {mode: flicker(by_track(run_video(video, smoothing=mode, frames=9)))[0] for mode in ("ema", "window")}
    assert raw[1] == 2 * 299 and raw[0] > 10  # per-frame labels do flicker here
    assert smoothed["ema"] < raw[0] / 3 and smoothed["window"] < raw[0] / 3


def test_flicker():
    assert flicker({1: ["a", "a", "b", "b"], 2: ["c", "d"]}) == (pytest.approx(200 / 4), 4)
    assert flicker({1: ["a"]}) == (0.0, 0)


def test_still_images_are_not_smoothed():
    rec = recognizer()
    frame_happy = face_video(1)[0][0]
    frame_sad = face_video(CHANGE + 1)[0][CHANGE]
    rec.predict_frame(frame_happy)
    faces = rec.predict_frame(frame_sad).faces
    assert [type(f).__name__ for f in faces] == ["Face", "Face"]
    assert faces[0].label == "sad" and "track" not in faces[0].to_dict(LABELS)


# ---- edgefer predict on a video -----------------------------------------------------------------------------------

def _brightness_onnx(path: Path) -> Path:
    """An ONNX model computing BrightnessBackend's logits, with its spec embedded."""
    import onnx
    from onnx import TensorProto, helper

    w = np.zeros((1, len(LABELS)), np.float32)
    w[0, HAPPY], w[0, SAD] = 10, -10
    bias = np.zeros(len(LABELS), np.float32)
    bias[[HAPPY, SAD]] = 1
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["mm"]),
         helper.make_node("Add", ["mm", "b"], ["logits"])],
        "brightness",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(LABELS)])],
        [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: SPEC.to_json()})
    onnx.save(model, str(path))
    return path


def _write_video(path: Path, video) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (W, H))
    for frame in video:
        writer.write(frame)
    writer.release()
    return path


@needs_cv2
@needs_onnxruntime
def test_predict_on_a_video_writes_tracks_and_smoothed_labels(tmp_path, monkeypatch):
    from edgefer.cli import main
    from edgefer.runtime import faces

    monkeypatch.setattr(faces, "default_detector", lambda: blob_detector)
    model = _brightness_onnx(tmp_path / "m.onnx")
    video = _write_video(tmp_path / "v.avi", face_video(120, noise=30.0, seed=2)[0])
    lines = {}
    for mode in ("none", "window"):
        out = tmp_path / f"{mode}.jsonl"
        result = CliRunner().invoke(main, ["predict", str(video), "--model", str(model), "--jsonl", str(out),
                                           "--smooth", mode, "--smooth-frames", "9"])
        assert result.exit_code == 0, result.output
        lines[mode] = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines["window"]) == 120
    first = lines["window"][0]["faces"]
    assert [face["track"] for face in first] == [1, 2]
    assert {"box", "track", "label", "raw_label", "score", "probs"} <= set(first[0])
    tracks = {m: {} for m in lines}
    for mode, records in lines.items():
        for record in records:
            for face in record["faces"]:
                tracks[mode].setdefault(face["track"], []).append(face["label"])
    assert sorted(tracks["window"]) == [1, 2]
    raw = flicker(tracks["none"])[0]
    assert flicker(tracks["window"])[0] < raw / 3
    # the raw labels written next to the smoothed ones are the unsmoothed run's labels
    raw_in_window = [[f["raw_label"] for f in r["faces"]] for r in lines["window"]]
    assert raw_in_window == [[f["label"] for f in r["faces"]] for r in lines["none"]]


@needs_cv2
@needs_onnxruntime
def test_predict_smoothing_options_are_checked(tmp_path):
    from edgefer.cli import main

    model = _brightness_onnx(tmp_path / "m.onnx")
    video = _write_video(tmp_path / "v.avi", face_video(3)[0])
    for args in (["--smooth", "median"], ["--smooth-frames", "0"]):
        result = CliRunner().invoke(main, ["predict", str(video), "--model", str(model), *args])
        assert result.exit_code == 2 and "error" in result.output.lower(), result.output


@needs_cv2
@needs_onnxruntime
def test_predict_no_detect_video_smooths_the_whole_frame(tmp_path):
    from edgefer.cli import main

    model = _brightness_onnx(tmp_path / "m.onnx")
    frames = np.zeros((12, H, W, 3), np.uint8)
    frames[:6], frames[6:] = 200, 60  # happy for 6 frames, then sad
    video = _write_video(tmp_path / "v.avi", frames)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["predict", str(video), "--model", str(model), "--no-detect", "--jsonl",
                                       str(out), "--smooth", "window", "--smooth-frames", "4"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["raw_label"] for r in records] == ["happy"] * 6 + ["sad"] * 6
    assert [r["label"] for r in records] == ["happy"] * 8 + ["sad"] * 4  # 3 of the last 4 frames sad: switched
    assert sum(records[-1]["probs"].values()) == pytest.approx(1, abs=1e-4)


def test_recognizer_video_opens_a_session_with_these_settings():
    from edgefer.runtime import VideoSession as Exported

    session = recognizer().video(smoothing="window", frames=7, iou_threshold=0.5, max_missed=2)
    assert isinstance(session, Exported) and session.smoother.mode == "window" and session.smoother.frames == 7
    assert session.tracker.iou_threshold == 0.5 and session.tracker.max_missed == 2
    video, _ = face_video(3)
    assert [[f.track for f in session.update(frame).faces] for frame in video] == [[1, 2]] * 3
    with pytest.raises(InputError):
        recognizer().video(smoothing="median")
