"""``edgefer predict``: emotions for an image, a folder of images, a video file or a camera, as JSON lines.

Only click (and the runtime's small backend table) is imported at module level; the runtime, cv2 (video,
camera, image decoding and face detection) and Pillow (image decoding when cv2 is missing) are imported when
the command runs. Image files are read as bytes and decoded in memory, so any file name works (OpenCV is never
handed a file name it cannot encode).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass, fields
from pathlib import Path

import click

from ..runtime.base import ALIASES, BACKENDS
from ..runtime.openvino import PRECISIONS
from ..runtime.video import SMOOTHING
from .options import exist_ok_option, number, printable, verbosity_options

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


@dataclass(frozen=True)
class PredictConfig:
    """How ``edgefer predict`` opens the model and reads its source (every field is an option)."""

    backend: str | None = None
    device: str | None = None
    threads: int | None = None
    precision: str | None = None
    sidecar: str | None = None
    detect: bool = True
    max_frames: int | None = None
    batch_size: int = 32
    logits: bool = False
    smooth: str = "ema"
    smooth_frames: int = 5


# (option declaration, help, extra click kwargs); the dataclass field is the option's long name.
_OPTIONS = [
    ("--backend", "Override the backend chosen from the model's suffix.",
     dict(type=click.Choice(sorted([*BACKENDS, *ALIASES])))),
    ("--device", "cpu/cuda (ONNX Runtime), CPU/GPU (OpenVINO), cuda:N (TensorRT).", {}),
    ("--threads", "CPU inference threads.", dict(type=number(int, min=1, max=4096))),
    ("--precision", "OpenVINO inference precision (an fp32 model runs in f32 unless told otherwise).",
     dict(type=click.Choice(sorted(PRECISIONS)))),
    ("--sidecar", "JSON spec for a model without embedded metadata (default: <model>.json).",
     dict(type=click.Path(dir_okay=False, exists=True))),
    ("--detect/--no-detect", "Find faces first (OpenCV Haar cascade); --no-detect for images that are already "
     "face crops.", {}),
    ("--max-frames", "Stop after this many images/frames.", dict(type=number(int, min=1, max=2**63 - 1))),
    ("--batch-size", "Face crops per inference call with --no-detect on a folder.",
     dict(type=number(int, min=1, max=65536))),
    ("--logits", "Include raw logits in the output.", dict(is_flag=True)),
    ("--smooth", "Video and camera: each face is tracked (\"track\" id) and its probabilities smoothed over the "
     "track's frames (ema or window), or not (none); \"raw_label\" is the frame's own. Images never are.",
     dict(type=click.Choice(SMOOTHING))),
    ("--smooth-frames", "Frames the smoothing spans: the window, or the EMA's span (alpha = 2 / (frames + 1)).",
     dict(type=number(int, min=1, max=10000))),
]


def _config_options(command):
    defaults = PredictConfig()
    names = {f.name for f in fields(PredictConfig)}
    for declaration, help_text, extra in reversed(_OPTIONS):
        name = declaration.split("/")[0][2:].replace("-", "_")
        assert name in names, name
        default = getattr(defaults, name)
        kwargs = {"default": default, "show_default": default not in (None, False), **extra}
        command = click.option(declaration, name, help=help_text, **kwargs)(command)
    return command


@click.command()
@click.argument("source")
@click.option("--model", "-m", "model_path", required=True, type=click.Path(dir_okay=False),
              help="Exported model: .onnx, .xml (OpenVINO IR) or .engine/.plan (TensorRT).")
@click.option("--jsonl", "jsonl_path", type=click.Path(dir_okay=False), default=None,
              help="Write JSON lines to this file instead of stdout.")
@click.option("--annotate", "annotate_path", type=click.Path(dir_okay=False), default=None,
              help="Write an annotated video (.mp4/.avi) with boxes and labels (video and camera sources).")
@_config_options
@exist_ok_option
@verbosity_options
def predict(source, model_path, jsonl_path, annotate_path, exist_ok, **values):
    """Predict emotions for SOURCE: an image, a folder of images, a video file or a camera index (0, 1, ...).

    Prints one JSON object per image or frame: with --detect, {"source", ["frame",] "faces": [{"box": [x, y, w,
    h], "label", "score", "probs"}]} ("faces": [] when none is found); with --no-detect, the whole image is the
    face: {"source", ["frame",] "label", "score", "probs"}. On video and cameras each face also has "track" (an id
    that stays with the face) and "raw_label" (the frame's own label; "label", "score" and "probs" are smoothed
    over the track, see --smooth). Unreadable images give {"source", "error"}.
    "source" is the file name as given; bytes that are not UTF-8 appear as \\xNN. Ctrl-C (or SIGTERM) stops
    and keeps what was written: the JSON lines so far and a playable --annotate video.
    """
    from .. import logs
    from ..errors import InputError
    from ..fileio import check_output
    from ..runtime import EmotionRecognizer

    config = PredictConfig(**values)
    kind = source_kind(source)
    if annotate_path and kind not in ("video", "camera"):
        raise InputError(f"--annotate needs a video file or camera source; {printable(source)} is an {kind}")
    for option, path in (("--jsonl", jsonl_path), ("--annotate", annotate_path)):
        if path:
            check_output(path, "file", exist_ok, option)
    recognizer = EmotionRecognizer.open(model_path, config.backend, device=config.device, threads=config.threads,
                                        precision=config.precision, sidecar=config.sidecar)
    if config.detect:
        from ..runtime.faces import default_detector

        recognizer.detector = default_detector()  # fail now, not at the first frame, when OpenCV is missing
    counts = Counts()
    with _jsonl_sink(jsonl_path) as emit, _sigterm_interrupts():

        def write(record):
            counts.add(record)
            emit(record)

        try:
            if kind in ("video", "camera"):
                counts.interrupted = _predict_video(recognizer, source, kind, config, annotate_path, write)
            else:
                paths = [Path(source)] if kind == "image" else list_images(Path(source))
                _predict_images(recognizer, paths[:config.max_frames], config, write)
        except KeyboardInterrupt:  # a camera runs until interrupted; keep what was written
            counts.interrupted = True
    if counts.interrupted:
        click.echo("edgefer: interrupted; kept what was written", err=True)
    line = counts.summary(jsonl_path, config.detect, "frames" if kind in ("video", "camera") else "images")
    if recognizer.backend.name == "openvino":  # what executed, read back from the compiled model (f32/bf16/f16)
        line += f"; OpenVINO computed in {recognizer.backend.precision} on {recognizer.backend.device}"
    logs.info(line)


@dataclass
class Counts:
    """What ``predict`` wrote: records, unreadable inputs, and inputs in which detection found no face."""

    records: int = 0
    errors: int = 0
    no_face: int = 0
    interrupted: bool = False

    def add(self, record: dict) -> None:
        self.records += 1
        self.errors += "error" in record
        self.no_face += record.get("faces") == []

    def summary(self, jsonl_path, detect: bool, unit: str) -> str:
        where = f" -> {printable(jsonl_path)}" if jsonl_path else ""
        line = f"edgefer: {self.records} record(s), {self.errors} unreadable{where}"
        readable = self.records - self.errors
        if detect and self.no_face:
            line += f"; no face found in {self.no_face}/{readable} {unit}"
            if self.no_face == readable:
                line += "; for face crops use --no-detect"
        return line


@contextlib.contextmanager
def _sigterm_interrupts():
    """Within the block, SIGTERM stops the work like Ctrl-C (KeyboardInterrupt), so outputs are kept whole."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def source_kind(source: str) -> str:
    """'camera', 'folder', 'video' or 'image' for SOURCE."""
    from ..errors import InputError

    path = Path(source)
    if source.isdigit() and not path.exists():
        return "camera"
    if path.is_dir():
        return "folder"
    if not path.is_file():
        raise InputError(f"{printable(source)}: no such image, folder, video file or camera index")
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


def list_images(folder: Path) -> list[Path]:
    from ..errors import InputError

    # broken and looping symbolic links stay in: each becomes an error line, counted as unreadable
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and (p.is_file() or (p.is_symlink() and not p.is_dir())))
    if not paths:
        raise InputError(f"{printable(folder)}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


def read_image(path: Path):
    """(uint8 array, colour order) or (None, reason). The file is read here and decoded in memory (cv2 when
    installed, else Pillow), so its name never reaches OpenCV."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        if Path(path).is_symlink() and not Path(path).exists():
            return None, "a symbolic link to a missing file (or a link loop)"
        return None, f"cannot read this file ({exc.strerror or exc})"
    try:
        import cv2
    except ImportError:
        return _read_with_pillow(data)
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYCOLOR) if data else None
    # 8-bit; gray stays 2-d, colour is BGR, alpha dropped
    return (image, "bgr") if image is not None else (None, "OpenCV cannot decode this file")


def _read_with_pillow(data: bytes):
    import io

    import numpy as np

    from ..errors import require

    Image = require("PIL.Image", "camera", "reading images without OpenCV")
    try:
        with Image.open(io.BytesIO(data)) as img:
            gray = img.mode in ("1", "L", "I", "I;16", "F")
            return np.asarray(img.convert("L" if gray else "RGB")), "rgb"
    except (OSError, SyntaxError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
        return None, f"Pillow cannot decode this file ({exc})"


def _predict_images(recognizer, paths, config: PredictConfig, write):
    from ..progress import progress

    pending = []  # (path, image or None, colour or error) waiting for a batch with --no-detect, in input order

    def flush():
        rows = {}
        for color in {c for _, img, c in pending if img is not None}:
            group = [i for i, (_, img, c) in enumerate(pending) if img is not None and c == color]
            pred = recognizer.predict([pending[i][1] for i in group], color=color, return_logits=config.logits)
            rows.update(zip(group, pred.to_dicts()))
        for i, (path, _, error) in enumerate(pending):
            source = printable(path)
            write({"source": source, **rows[i]} if i in rows else {"source": source, "error": error})
        pending.clear()

    try:
        for path in progress(paths, total=len(paths), desc="predict"):
            image, color = read_image(path)
            if image is not None and config.detect:
                result = recognizer.predict_frame(image, color=color, return_logits=config.logits)
                write({"source": printable(path), "faces": _faces(result, config.logits)})
            elif image is None and config.detect:
                write({"source": printable(path), "error": color})
            else:
                pending.append((path, image, color))
                if len(pending) >= config.batch_size:
                    flush()
    except KeyboardInterrupt:
        flush()  # the images read so far get their lines
        raise
    flush()


def _predict_video(recognizer, source, kind, config: PredictConfig, annotate_path, write) -> bool:
    """Predict every frame; True when interrupted (Ctrl-C / SIGTERM), after closing the outputs whole."""
    from ..errors import InputError, require
    from ..progress import progress
    from ..runtime.video import ProbabilitySmoother, VideoSession

    cv2 = require("cv2", "camera", "reading video and cameras")
    max_frames = config.max_frames
    session = VideoSession(recognizer, smoothing=config.smooth, frames=config.smooth_frames) if config.detect else None
    smoother = None if config.detect else ProbabilitySmoother(config.smooth, config.smooth_frames)
    with contextlib.ExitStack() as stack:
        capture = cv2.VideoCapture(int(source) if kind == "camera" else stack.enter_context(_opencv_name(source)))
        stack.callback(capture.release)
        if not capture.isOpened():
            raise InputError(f"{printable(source)}: cannot open this {kind} with OpenCV")
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "video" else None
        total = min(total, max_frames) if total and max_frames else (total or max_frames)
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        name = printable(source)
        writer = None
        try:
            for index in progress(range(max_frames) if max_frames else _forever(), total=total, desc="predict"):
                ok, frame = capture.read()
                if not ok:
                    break
                if config.detect:
                    result = session.update(frame, return_logits=config.logits)
                    record = {"source": name, "frame": index, "faces": _faces(result, config.logits)}
                    boxes = [(f.box, f"#{f.track} {f.label} {f.score:.2f}") for f in result.faces]
                else:
                    row = _smoothed_row(recognizer.predict(frame, return_logits=config.logits), smoother)
                    record = {"source": name, "frame": index, **row}
                    boxes = [(None, f"{row['label']} {row['score']:.2f}")]
                if annotate_path:
                    if writer is None:
                        writer = stack.enter_context(_video_writer(cv2, Path(annotate_path), fps, frame.shape))
                    writer.write(draw_labels(cv2, frame, boxes))
                write(record)
        except KeyboardInterrupt:  # leave the loop normally: the video writer is released and its file published
            return True
    return False


@contextlib.contextmanager
def _opencv_name(source: str):
    """A name for ``source`` that OpenCV can take: the name itself when it is valid UTF-8, else a symbolic link
    with a plain name in a temporary directory (OpenCV crashed on names that are not UTF-8)."""
    import shutil
    import tempfile

    try:
        source.encode("utf-8")
    except UnicodeEncodeError:
        folder = tempfile.mkdtemp(prefix="edgefer-predict-")
        try:
            link = os.path.join(folder, "source" + Path(source).suffix.encode("ascii", "ignore").decode())
            os.symlink(os.path.abspath(source), link)
            yield link
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        yield source


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


def _smoothed_row(prediction, smoother) -> dict:
    """The JSON row of a --no-detect frame, its probabilities smoothed over the video (``raw_label``: its own)."""
    row = prediction.to_dicts()[0]
    probs = smoother.smooth(0, prediction.probs[0])
    index = int(probs.argmax())
    names = prediction.class_names
    row.update(label=names[index], score=round(float(probs[index]), 6),
               probs={name: round(float(p), 6) for name, p in zip(names, probs)}, raw_label=prediction.labels[0])
    return row


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
    """An OpenCV VideoWriter whose file appears at ``path`` only when complete (atomic rename). OpenCV writes
    to a plain ASCII staging name beside it, so any output name works."""
    from ..errors import InputError
    from ..fileio import atomic_path

    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG"))
    suffix = path.suffix.encode("ascii", "ignore").decode()  # OpenCV picks the container from the suffix
    with atomic_path(path) as tmp:
        staging = tmp.with_name(f".edgefer-annotate-{os.getpid()}-{id(tmp):x}{suffix}")
        writer = cv2.VideoWriter(str(staging), fourcc, fps, (shape[1], shape[0]))
        try:
            if not writer.isOpened():
                raise InputError(f"--annotate {printable(path)}: OpenCV cannot write this video format "
                                 "(use .mp4 or .avi)")
            counted = _CountedWriter(writer)
            yield counted
            writer.release()
            _check_video_written(cv2, staging, counted.frames, tmp)
            staging.replace(tmp)
        finally:
            writer.release()
            staging.unlink(missing_ok=True)


class _CountedWriter:
    """A VideoWriter that counts the frames given to it."""

    def __init__(self, writer):
        self.writer, self.frames = writer, 0

    def write(self, frame) -> None:
        self.writer.write(frame)
        self.frames += 1


def _check_video_written(cv2, staging: Path, frames: int, tmp: Path) -> None:
    """OpenCV does not report a failed write (a full disk, a file size limit): it leaves a short video. When the
    file does not hold every frame, a write of our own at its end finds the reason and raises it (as an OSError
    on ``tmp``, which ``atomic_path`` turns into one line naming the output); a file that writes is kept."""
    capture = cv2.VideoCapture(str(staging))
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else -1
    finally:
        capture.release()
    if count == frames:
        return
    size = staging.stat().st_size
    try:
        with open(staging, "ab") as f:
            f.write(bytes(1 << 20))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(tmp)) from None
    finally:
        os.truncate(staging, size)


@contextlib.contextmanager
def _jsonl_sink(path: str | None):
    """A function writing one JSON object per line to ``path`` (atomically, when the command ends, also when
    it is interrupted) or to stdout (flushed line by line)."""
    if path is None:
        yield lambda record: click.echo(json.dumps(record))
        return
    from ..fileio import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yield lambda record: f.write(json.dumps(record) + "\n")
