"""Embedding edgefer in a camera application: read frames, find faces, overlay the emotion.

    python examples/camera_app.py --model export/ov-int8/model.int8.xml                     # camera 0
    python examples/camera_app.py --model export/ov-int8/model.int8.xml --source clip.mp4 --out annotated.mp4 \\
        --jsonl faces.jsonl --max-frames 100
    python examples/camera_app.py --model export/ov-int8/model.int8.xml --show              # a window
    python examples/camera_app.py --model export/ov-int8/model.int8.xml --smooth none       # per-frame labels

Needs only numpy, OpenCV 4.x (``pip install 'edgefer[camera]'``) and the runtime of the model (onnxruntime,
openvino or tensorrt) — no torch. By default it writes an annotated video (``--out``, default annotated.mp4),
and prints one line per frame (or writes JSON lines with ``--jsonl``); stop a camera with Ctrl-C. ``--show``
opens a window instead, which needs an OpenCV build with a GUI: ``edgefer[camera]`` installs
opencv-python-headless, which has none (``pip install opencv-python`` replaces it with one that has).

Each face is tracked from frame to frame (its ``track`` id stays the same) and its emotion is smoothed over its
track (``--smooth ema``, the default, or ``window`` over ``--smooth-frames`` frames), so labels do not flicker;
``--smooth none`` shows each frame's own answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import cv2

from edgefer.runtime import EmotionRecognizer
from edgefer.runtime.video import VideoSession


def opencv_has_gui() -> bool:
    """Whether this OpenCV build can open windows (``GUI: NONE`` in its build information when it cannot)."""
    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.strip().partition(":")
        if name == "GUI":
            return value.strip().upper() not in ("", "NONE", "NO")
    return False


def quiet_opencv() -> None:
    """Silence OpenCV's own log lines (``[ WARN:0@...] cap_v4l.cpp ...``): failures are reported here, in one line."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)


def annotate(frame, result) -> None:
    """Draw each face's box and its most likely emotion onto ``frame`` (in place)."""
    for face in result.faces:
        x, y, w, h = face.box
        cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 255, 0), 2)
        cv2.putText(frame, f"#{face.track} {face.label} {face.score:.0%}", (x, max(y - 8, 12)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (0, 255, 0), 2, cv2.LINE_AA)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Facial emotion recognition on a camera or video: writes an "
                                     "annotated video and per-frame results, or shows a window (--show).")
    parser.add_argument("--model", required=True, help="exported model: .onnx, .xml or .engine")
    parser.add_argument("--source", default="0", help="camera index or video file (default: camera 0)")
    parser.add_argument("--out", default="annotated.mp4", help="annotated video to write (default: annotated.mp4;"
                        " '' for none)")
    parser.add_argument("--jsonl", default=None, help="write one JSON object per frame here instead of printing")
    parser.add_argument("--show", action="store_true", help="show a window (q quits); needs OpenCV with a GUI")
    parser.add_argument("--headless", action="store_true", help=argparse.SUPPRESS)  # the default; older scripts
    parser.add_argument("--threads", type=int, default=None, help="CPU inference threads")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--smooth", choices=("ema", "window", "none"), default="ema",
                        help="smooth each tracked face's probabilities over frames (default: ema)")
    parser.add_argument("--smooth-frames", type=int, default=5, help="frames the smoothing spans (default: 5)")
    args = parser.parse_args(argv)
    if args.show and not opencv_has_gui():
        parser.error("--show: this OpenCV build has no GUI (opencv-python-headless, as edgefer[camera] installs); "
                     "pip install opencv-python for windows, or leave out --show to write --out/--jsonl")

    if args.smooth_frames < 1:
        parser.error("--smooth-frames must be at least 1")
    recognizer = EmotionRecognizer.open(args.model, threads=args.threads)  # labels + preprocessing from the model
    session = VideoSession(recognizer, smoothing=args.smooth, frames=args.smooth_frames)  # tracks faces over frames
    quiet_opencv()
    capture = cv2.VideoCapture(int(args.source) if args.source.isdigit() else args.source)
    if not capture.isOpened():  # one line, no usage block: the arguments were fine
        print(f"camera_app: error: cannot open {args.source!r} (no such camera or video file, or no codec for it)",
              file=sys.stderr)
        return 2
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    log = open(args.jsonl, "w", encoding="utf-8") if args.jsonl else None
    frames, started = 0, time.perf_counter()
    try:
        while args.max_frames is None or frames < args.max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            result = session.update(frame)  # .faces == [] when there is no face in the frame
            frames += 1
            faces = [(face.track, face.label, round(face.score, 2), face.box) for face in result.faces]
            if log:
                log.write(json.dumps({"frame": frames, "faces": result.to_dicts()}) + "\n")
            elif not args.show:
                print(frames, faces, flush=True)
            annotate(frame, result)
            if args.out and not args.show:
                if writer is None:
                    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if args.out.lower().endswith(".avi") else "mp4v"))
                    writer = cv2.VideoWriter(args.out, fourcc, fps, (frame.shape[1], frame.shape[0]))
                writer.write(frame)
            if args.show:
                cv2.imshow("edgefer", frame)
                if cv2.waitKey(1) & 0xFF == ord("q"):
                    break
    except KeyboardInterrupt:  # Ctrl-C stops a camera; the video and JSON lines so far are kept
        pass
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if log:
            log.close()
        recognizer.close()
        if args.show:
            cv2.destroyAllWindows()
    wrote = [path for path in (args.out if writer is not None else None, args.jsonl) if path]
    print(f"{frames} frames, {frames / max(time.perf_counter() - started, 1e-9):.1f} fps"
          + (f"; wrote {', '.join(wrote)}" if wrote else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
