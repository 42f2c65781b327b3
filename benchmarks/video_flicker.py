"""Flicker on a video (label changes per 100 frames of a tracked face), per-frame labels against the smoothing
settings of ``edgefer.runtime.video.VideoSession``: faces are detected and classified once per frame, then the same
per-frame results are replayed through ``VideoSession`` (IoU tracker + smoothing) for each setting.

    .venv/bin/python benchmarks/video_flicker.py clip.mp4 --model export/model.onnx --max-frames 300
    .venv/bin/python benchmarks/video_flicker.py --from-jsonl out.jsonl   # `edgefer predict VIDEO --jsonl out.jsonl`

Flicker counts, over each track's frames in order, how often its label differs from the one in the track's
previous frame, per 100 such pairs. The per-frame row uses the same tracks (``raw_label``), so the rows differ
only by smoothing. ``--from-jsonl`` reads an ``edgefer predict`` output instead (its ``label`` against its
``raw_label``). Prints a markdown table; ``--out`` writes it as JSON too.

Produces: no RESULTS.md section; docs/deploy.md, "Video: tracked faces, steady emotions".
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import common

from edgefer.runtime.video import VideoSession, flicker

SETTINGS = [("ema", 3), ("ema", 5), ("ema", 9), ("window", 5), ("window", 9), ("window", 15)]


class Replay:
    """Stands in for the recognizer inside ``VideoSession``: hands back stored per-frame results in order."""

    def __init__(self, results, labels):
        self.results, self.labels, self.position = results, labels, 0

    def predict_frame(self, frame, **kwargs):
        self.position += 1
        return self.results[self.position - 1]


def run_video(video: str, model: str, max_frames: int | None, threads: int | None):
    import cv2

    from edgefer.runtime import EmotionRecognizer

    recognizer = EmotionRecognizer.open(model, threads=threads)
    capture = cv2.VideoCapture(video)
    if not capture.isOpened():
        sys.exit(f"cannot open {video}")
    results, started = [], time.perf_counter()
    while max_frames is None or len(results) < max_frames:
        ok, frame = capture.read()
        if not ok:
            break
        results.append(recognizer.predict_frame(frame))
    capture.release()
    seconds = time.perf_counter() - started
    rows = []
    for mode, frames in [("none", 1), *SETTINGS]:
        session = VideoSession(recognizer, smoothing=mode, frames=frames)
        session.recognizer = Replay(results, recognizer.labels)
        tracks: dict = {}
        for _ in results:
            for face in session.update(None).faces:
                tracks.setdefault(face.track, []).append(face.label)
        value, pairs = flicker(tracks)
        rows.append({"smoothing": "per-frame (none)" if mode == "none" else f"{mode}, {frames} frames",
                     "switch_frames": session.smoother.switch_frames, "flicker_per_100": round(value, 2),
                     "pairs": pairs, "tracks": len(tracks)})
    faces = sum(len(r.faces) for r in results)
    info = {"video": video, "model": model, "frames": len(results), "faces": faces,
            "frames_with_a_face": sum(bool(r.faces) for r in results), "seconds": round(seconds, 1)}
    return info, rows


def from_jsonl(path: str):
    smoothed: dict = {}
    raw: dict = {}
    frames = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            frames += 1
            for face in record.get("faces", []):
                smoothed.setdefault(face["track"], []).append(face["label"])
                raw.setdefault(face["track"], []).append(face["raw_label"])
    rows = []
    for name, tracks in (("per-frame (raw_label)", raw), ("smoothed (label)", smoothed)):
        value, pairs = flicker(tracks)
        rows.append({"smoothing": name, "switch_frames": None, "flicker_per_100": round(value, 2), "pairs": pairs,
                     "tracks": len(tracks)})
    return {"jsonl": path, "frames": frames}, rows


def main(argv=None) -> int:
    ap = common.parser(__doc__)
    ap.add_argument("video", nargs="?")
    ap.add_argument("--model")
    ap.add_argument("--from-jsonl")
    ap.add_argument("--max-frames", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out", type=Path)
    args = common.parse(ap, argv, __file__)
    if args.from_jsonl:
        info, rows = from_jsonl(args.from_jsonl)
    elif args.video and args.model:
        info, rows = run_video(args.video, args.model, args.max_frames, args.threads)
    else:
        ap.error("give VIDEO and --model, or --from-jsonl")
    print(", ".join(f"{k} {v}" for k, v in info.items()))
    print("| smoothing | switches within (frames) | label changes per 100 frames | frame pairs | tracks |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['smoothing']} | {r['switch_frames'] or '-'} | {r['flicker_per_100']} | {r['pairs']} | "
              f"{r['tracks']} |")
    if args.out:
        common.write_result(args.out, {**info, "rows": rows}, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
