"""``edgefer predict``: emotions for an image, a folder of images, a video file or a camera, as JSON lines.

Only click is imported at module level; the runtime, cv2 (video, camera, image decoding and face
detection) and Pillow (image decoding when cv2 is missing) are imported when the command runs.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


@click.command()
@click.argument("source")
@click.option("--model", "-m", "model_path", required=True, type=click.Path(dir_okay=False),
              help="Exported model: .onnx, .xml (OpenVINO IR) or .engine/.plan (TensorRT).")
@click.option("--backend", type=click.Choice(["onnxruntime", "openvino", "tensorrt"]), default=None,
              help="Override the backend chosen from the model's suffix.")
@click.option("--device", default=None, help="cpu/cuda (ONNX Runtime), CPU/GPU (OpenVINO), cuda:N (TensorRT).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU inference threads.")
@click.option("--precision", type=click.Choice(["f32", "bf16", "f16"]), default=None,
              help="OpenVINO inference precision (an fp32 model runs in f32 unless told otherwise).")
@click.option("--sidecar", type=click.Path(dir_okay=False), default=None,
              help="JSON spec for a model without embedded metadata (default: <model>.json).")
@click.option("--jsonl", "jsonl_path", type=click.Path(dir_okay=False), default=None,
              help="Write JSON lines to this file instead of stdout.")
@click.option("--annotate", "annotate_path", type=click.Path(dir_okay=False), default=None,
              help="Write an annotated video (.mp4/.avi) with boxes and labels (video and camera sources).")
@click.option("--detect/--no-detect", default=True, show_default=True,
              help="Find faces first (OpenCV Haar cascade); --no-detect for images that are already face crops.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after this many images/frames.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Face crops per inference call with --no-detect on a folder.")
@click.option("--logits", is_flag=True, help="Include raw logits in the output.")
def predict(source, model_path, backend, device, threads, precision, sidecar, jsonl_path, annotate_path, detect,
            max_frames, batch_size, logits):
    """Predict emotions for SOURCE: an image, a folder of images, a video file or a camera index (0, 1, ...).

    Prints one JSON object per image or frame: with --detect, {"source", ["frame",] "faces": [{"box": [x, y, w,
    h], "label", "score", "probs"}]} ("faces": [] when none is found); with --no-detect, the whole image is the
    face: {"source", ["frame",] "label", "score", "probs"}. Unreadable images give {"source", "error"}.
    """
    from ..errors import InputError
    from ..runtime import EmotionRecognizer

    kind = source_kind(source)
    if annotate_path and kind not in ("video", "camera"):
        raise InputError(f"--annotate needs a video file or camera source; {source} is an {kind}")
    recognizer = EmotionRecognizer.open(model_path, backend, device=device, threads=threads, precision=precision,
                                        sidecar=sidecar)
    if detect:
        from ..runtime.faces import default_detector

        recognizer.detector = default_detector()  # fail now, not at the first frame, when OpenCV is missing
    counts = {"records": 0, "errors": 0}
    with _jsonl_sink(jsonl_path) as emit:

        def write(record):
            counts["records"] += 1
            counts["errors"] += "error" in record
            emit(record)

        try:
            if kind in ("video", "camera"):
                _predict_video(recognizer, source, kind, detect, max_frames, annotate_path, logits, write)
            else:
                paths = [Path(source)] if kind == "image" else list_images(Path(source))
                _predict_images(recognizer, paths[:max_frames], detect, batch_size, logits, write)
        except KeyboardInterrupt:  # a camera runs until interrupted; keep what was written
            click.echo("edgefer: interrupted", err=True)
    where = f" -> {jsonl_path}" if jsonl_path else ""
    click.echo(f"edgefer: {counts['records']} record(s), {counts['errors']} unreadable{where}", err=True)


def source_kind(source: str) -> str:
    """'camera', 'folder', 'video' or 'image' for SOURCE."""
    from ..errors import InputError

    path = Path(source)
    if source.isdigit() and not path.exists():
        return "camera"
    if path.is_dir():
        return "folder"
    if not path.is_file():
        raise InputError(f"{source}: no such image, folder, video file or camera index")
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


def list_images(folder: Path) -> list[Path]:
    from ..errors import InputError

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise InputError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


def read_image(path: Path):
    """(uint8 array, colour order) or (None, reason). cv2 when installed, else Pillow."""
    try:
        import cv2
    except ImportError:
        return _read_with_pillow(path)
    image = cv2.imread(str(path), cv2.IMREAD_ANYCOLOR)  # 8-bit; gray stays 2-d, colour is BGR, alpha dropped
    return (image, "bgr") if image is not None else (None, "OpenCV cannot decode this file")


def _read_with_pillow(path: Path):
    import numpy as np

    from ..errors import require

    Image = require("PIL.Image", "camera", "reading images without OpenCV")
    try:
        with Image.open(path) as img:
            gray = img.mode in ("1", "L", "I", "I;16", "F")
            return np.asarray(img.convert("L" if gray else "RGB")), "rgb"
    except (OSError, SyntaxError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
        return None, f"Pillow cannot decode this file ({exc})"


def _predict_images(recognizer, paths, detect, batch_size, logits, write):
    from ..progress import progress

    pending = []  # (path, image or None, colour or error) waiting for a batch with --no-detect, in input order

    def flush():
        rows = {}
        for color in {c for _, img, c in pending if img is not None}:
            group = [i for i, (_, img, c) in enumerate(pending) if img is not None and c == color]
            pred = recognizer.predict([pending[i][1] for i in group], color=color, return_logits=logits)
            rows.update(zip(group, pred.to_dicts()))
        for i, (path, _, error) in enumerate(pending):
            write({"source": str(path), **rows[i]} if i in rows else {"source": str(path), "error": error})
        pending.clear()

    for path in progress(paths, total=len(paths), desc="predict"):
        image, color = read_image(path)
        if image is not None and detect:
            result = recognizer.predict_frame(image, color=color, return_logits=logits)
            write({"source": str(path), "faces": _faces(result, logits)})
        elif image is None and detect:
            write({"source": str(path), "error": color})
        else:
            pending.append((path, image, color))
            if len(pending) >= batch_size:
                flush()
    flush()


def _predict_video(recognizer, source, kind, detect, max_frames, annotate_path, logits, write):
    from ..errors import InputError, require
    from ..progress import progress

    cv2 = require("cv2", "camera", "reading video and cameras")
    capture = cv2.VideoCapture(int(source) if kind == "camera" else source)
    if not capture.isOpened():
        raise InputError(f"{source}: cannot open this {kind} with OpenCV")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "video" else None
    total = min(total, max_frames) if total and max_frames else (total or max_frames)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    with contextlib.ExitStack() as stack:
        stack.callback(capture.release)
        writer = None
        for index in progress(range(max_frames) if max_frames else _forever(), total=total, desc="predict"):
            ok, frame = capture.read()
            if not ok:
                break
            if detect:
                result = recognizer.predict_frame(frame, return_logits=logits)
                record = {"source": source, "frame": index, "faces": _faces(result, logits)}
                boxes = [(f.box, f"{f.label} {f.score:.2f}") for f in result.faces]
            else:
                row = recognizer.predict(frame, return_logits=logits).to_dicts()[0]
                record = {"source": source, "frame": index, **row}
                boxes = [(None, f"{row['label']} {row['score']:.2f}")]
            write(record)
            if annotate_path:
                if writer is None:
                    writer = stack.enter_context(_video_writer(cv2, Path(annotate_path), fps, frame.shape))
                writer.write(draw_labels(cv2, frame, boxes))


def _forever():
    index = 0
    while True:
        yield index
        index += 1


def _faces(result, logits) -> list[dict]:
    rows = result.to_dicts()
    if logits and result.prediction is not None:
        for row, values in zip(rows, result.prediction.logits):
            row["logits"] = [round(float(v), 6) for v in values]
    return rows


def draw_labels(cv2, frame, boxes):
    """Copy of ``frame`` (BGR) with each (box or None, text): a rectangle and its label."""
    out = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    for box, text in boxes:
        x, y = (box[0], max(box[1] - 6, 12)) if box else (8, 20)
        if box:
            cv2.rectangle(out, (box[0], box[1]), (box[0] + box[2], box[1] + box[3]), (0, 255, 0), 2)
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1, cv2.LINE_AA)
    return out


@contextlib.contextmanager
def _video_writer(cv2, path: Path, fps: float, shape):
    """An OpenCV VideoWriter whose file appears at ``path`` only when complete (atomic rename)."""
    from ..errors import InputError
    from ..fileio import atomic_path

    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG"))
    with atomic_path(path) as tmp:
        staging = tmp.with_name(tmp.stem + path.suffix)  # OpenCV picks the container from the suffix
        writer = cv2.VideoWriter(str(staging), fourcc, fps, (shape[1], shape[0]))
        try:
            if not writer.isOpened():
                raise InputError(f"--annotate {path}: OpenCV cannot write this video format (use .mp4 or .avi)")
            yield writer
            writer.release()
            staging.replace(tmp)
        finally:
            writer.release()
            staging.unlink(missing_ok=True)


@contextlib.contextmanager
def _jsonl_sink(path: str | None):
    """A function writing one JSON object per line to ``path`` (atomically, on success) or stdout."""
    if path is None:
        yield lambda record: click.echo(json.dumps(record))
        return
    from ..fileio import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yield lambda record: f.write(json.dumps(record) + "\n")
