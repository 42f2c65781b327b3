"""Embedding edgefer in a camera application: read frames, find faces, overlay the emotion.

    python examples/camera_app.py --model fer.onnx                 # camera 0, window (press q to quit)
    python examples/camera_app.py --model fer.xml --source clip.mp4 --headless --max-frames 100

Needs only numpy, OpenCV 4.x (``pip install 'edgefer[camera]'``) and the runtime of the model
(onnxruntime, openvino or tensorrt) — no torch. --headless prints one line per frame instead of a window.
"""

from __future__ import annotations

import argparse
import time

import cv2

from edgefer.runtime import EmotionRecognizer


def annotate(frame, result) -> None:
    """Draw each face's box and its most likely emotion onto ``frame`` (in place)."""
    for face in result.faces:
        x, y, w, h = face.box
        cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 255, 0), 2)
        cv2.putText(frame, f"{face.label} {face.score:.0%}", (x, max(y - 8, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (0, 255, 0), 2, cv2.LINE_AA)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Facial emotion recognition on a camera or video.")
    parser.add_argument("--model", required=True, help="exported model: .onnx, .xml or .engine")
    parser.add_argument("--source", default="0", help="camera index or video file (default: camera 0)")
    parser.add_argument("--threads", type=int, default=None, help="CPU inference threads")
    parser.add_argument("--headless", action="store_true", help="print results instead of opening a window")
    parser.add_argument("--max-frames", type=int, default=None)
    args = parser.parse_args(argv)

    recognizer = EmotionRecognizer.open(args.model, threads=args.threads)  # labels + preprocessing from the model
    capture = cv2.VideoCapture(int(args.source) if args.source.isdigit() else args.source)
    if not capture.isOpened():
        parser.error(f"cannot open {args.source}")
    frames, started = 0, time.perf_counter()
    try:
        while args.max_frames is None or frames < args.max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            result = recognizer.predict_frame(frame)  # [] when there is no face in the frame
            frames += 1
            if args.headless:
                print(frames, [(face.label, round(face.score, 2), face.box) for face in result.faces])
                continue
            annotate(frame, result)
            cv2.imshow("edgefer", frame)
            if cv2.waitKey(1) & 0xFF == ord("q"):
                break
    finally:
        capture.release()
        recognizer.close()
        if not args.headless:
            cv2.destroyAllWindows()
    print(f"{frames} frames, {frames / max(time.perf_counter() - started, 1e-9):.1f} fps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
