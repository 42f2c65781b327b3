"""Fuzz edgefer's input handling: only ``EdgeferError`` subclasses may escape, whatever the input.

    python benchmarks/fuzz.py --cases 20000 --target csv --seed 0 --out fuzz-csv.json
    python benchmarks/fuzz.py --cases 2000 --target all

Targets:
  csv              ``edgefer.data.load`` on generated FER2013 CSV files: random bytes, header variants, random
                   fields (huge, negative, non-ASCII digits, non-breaking spaces ...), mixed LF / CRLF / CR line
                   ends, other encodings, byte flips and truncation, file names that are not valid UTF-8;
  folder           ``edgefer.data.load`` on generated image trees: class / split / mixed layouts, alias and
                   unknown class names, images of every Pillow mode and format, random and corrupted image
                   bytes, empty files, hidden files, FIFOs, broken / looping / folder symlinks, non-UTF-8 names;
  spec             ``ModelSpec.from_json`` and ``read_sidecar`` on random JSON (near-valid specs with fields
                   replaced by random values, deep nesting, huge numbers) and random sidecar bytes;
  predict-onnx     ``EmotionRecognizer.predict`` on random arrays (shapes, dtypes, values incl. NaN/inf, ragged
  predict-openvino lists) with a tiny model exported on the fly (timm test_efficientnet, 32 px); a result must
                   hold finite probabilities that sum to 1.

Every case draws from ``random.Random(f"{seed}:{target}:{case}")``, so ``--seed S --start I --cases 1``
replays case I. Accepted inputs are also checked (uint8 48x48 images, labels in range, printable ids and a
JSON-serialisable report; a spec survives its own JSON). An escape is any other exception or failed check;
the JSON summary lists each kind (exception type and the innermost edgefer frame) with its count, first
case and traceback, plus cases, wall time and machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from edgefer.errors import EdgeferError  # noqa: E402

# ------------------------------------------------------------------ the tiny model for the predict targets


def build_tiny_models(folder: Path) -> dict:
    """Random-init timm ``test_efficientnet`` (gray, 7 classes, 32 px) exported by edgefer to ONNX and
    OpenVINO IR with the spec embedded: {"onnx": path, "openvino": path}. The only function here that knows
    edgefer's export API."""
    import torch

    from edgefer.export.onnx import save_onnx, torch_to_onnx
    from edgefer.export.openvino import to_ir
    from edgefer.models import create_model, spec_for

    folder.mkdir(parents=True, exist_ok=True)
    onnx_path, xml_path = folder / "tiny.onnx", folder / "tiny.xml"
    torch.manual_seed(0)
    model = create_model("test_efficientnet", num_classes=7, in_chans=1).eval()
    spec = spec_for(model, 32, arch="test_efficientnet")
    proto, _ = torch_to_onnx(model, spec)
    save_onnx(proto, onnx_path, spec)
    to_ir(onnx_path, xml_path, spec)
    return {"onnx": onnx_path, "openvino": xml_path}


# ------------------------------------------------------------------------------------ shared pieces

NON_UTF8_NAMES = [b"caf\xe9", b"\xff\xfe", b"da\xdft\xe4", b"\x80x", b"ok\xc3"]  # Latin-1 / stray bytes
JUNK_FIELDS = ["", " ", "x", "-1", "256", "1e3", "12.5", "9" * 25, "9" * 5000, "\u00a0", "\u0663", "1_0", "+7",
               "NaN", "\x00", "\ufeff", '"', "\u00e9", "0x10", "\u2028", "-0", "007", "\t3\t", "\U0001f600"]
LINE_ENDS = ["\n", "\r\n", "\r"]


def random_name(rng: random.Random, suffix: str = "") -> str:
    """A file name: plain, with spaces or non-ASCII letters, or raw bytes that are not valid UTF-8."""
    kind = rng.random()
    if kind < 0.15:
        return os.fsdecode(rng.choice(NON_UTF8_NAMES) + suffix.encode())
    if kind < 0.3:
        return rng.choice(["données", "x y", "\u00e9t\u00e9", "a" * 100, "-rf", "\u4f60\u597d", "sp ace "]) + suffix
    return f"f{rng.randrange(10**6)}{suffix}"


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Flip, insert or drop a few bytes, or truncate."""
    data = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        op = rng.random()
        if not data or op < 0.3:
            data[rng.randrange(len(data) + 1):rng.randrange(len(data) + 1)] = rng.randbytes(rng.randrange(1, 5))
        elif op < 0.7:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op < 0.85:
            del data[rng.randrange(len(data)):][:rng.randrange(1, 50)]
        else:
            del data[rng.randrange(len(data)):]
    return bytes(data)


def check_loaded(loaded) -> None:
    """What an accepted data set must look like."""
    from edgefer.data import evaluation_set, inspect_report, prepare_splits

    assert loaded.splits, "load returned no splits"
    for name, dataset in loaded.splits.items():
        assert dataset.images.dtype == np.uint8 and dataset.images.shape[1:] == (48, 48), name
        assert len(dataset) > 0 and dataset.labels.min() >= 0 and dataset.labels.max() < len(dataset.classes)
        for text in dataset.ids.tolist():
            text.encode("utf-8")  # printable: no lone surrogates
    json.dumps(loaded.report.to_dict(), ensure_ascii=False).encode("utf-8")
    whole = evaluation_set(loaded, "all")
    assert len(whole) == sum(len(d) for d in loaded.splits.values())
    if loaded.get("train") is not None:
        json.dumps(inspect_report(prepare_splits(loaded)), ensure_ascii=False).encode("utf-8")


def load_and_check(path: Path, rng: random.Random) -> None:
    from edgefer.data import load

    check_loaded(load(path, skip_bad=rng.random() < 0.5))


# ---------------------------------------------------------------------------------------------- csv


def _pixels(rng: random.Random) -> str:
    values = [str(rng.randrange(256)) for _ in range(2304)]
    kind = rng.random()
    if kind < 0.25:
        values[rng.randrange(2304)] = rng.choice(JUNK_FIELDS)
    elif kind < 0.35:
        values = values[:rng.choice([0, 1, 2303])] if rng.random() < 0.5 else values + ["1"]
    seps = [" "] if rng.random() < 0.6 else [" ", "  ", "\t", "\u00a0", " \u00a0", "\u3000"]
    text = "".join(v + rng.choice(seps) for v in values)[:-1]
    return f'"{text}"' if rng.random() < 0.2 else text


def csv_bytes(rng: random.Random) -> bytes:
    """One generated CSV file (see the module docstring)."""
    if rng.random() < 0.1:
        return rng.randbytes(rng.randrange(0, 3000))
    header = rng.choice([["emotion", "pixels", "Usage"], ["emotion", "pixels"], ["Usage", "pixels", "emotion"],
                         ["label", "pixels"], ["emotion"], ["pixels", "emotion", "Usage", "extra"], [],
                         ["emotion", "emotion", "pixels"], [" Emotion ", " pixels"]])
    lines = [",".join(header)] if rng.random() < 0.95 else []
    for _ in range(rng.randrange(0, 5)):
        fields = []
        for column in header or ["emotion", "pixels"]:
            name = column.strip().lower()
            if name == "pixels":
                fields.append(_pixels(rng))
            elif name in ("emotion", "label"):
                fields.append(str(rng.randrange(7)) if rng.random() < 0.8 else rng.choice(JUNK_FIELDS))
            elif name == "usage":
                fields.append(rng.choice(["Training", "PublicTest", "PrivateTest"]) if rng.random() < 0.85
                              else rng.choice(JUNK_FIELDS + ["training", "Validation"]))
            else:
                fields.append(rng.choice(JUNK_FIELDS))
        if rng.random() < 0.1:
            fields.insert(rng.randrange(len(fields) + 1), rng.choice(JUNK_FIELDS))
        lines.append(",".join(fields))
    if rng.random() < 0.1:
        lines.insert(rng.randrange(len(lines) + 1), "")
    ends = [rng.choice(LINE_ENDS)] if rng.random() < 0.7 else LINE_ENDS
    text = "".join(line + rng.choice(ends) for line in lines)
    if rng.random() < 0.2:
        text = text.rstrip("\r\n")
    codec = rng.choice(["utf-8"] * 6 + ["utf-8-sig", "latin-1", "utf-16", "cp1252"])
    data = text.encode(codec, errors="replace")
    return mutate(rng, data) if rng.random() < 0.2 else data


def csv_case(rng: random.Random, work: Path) -> None:
    suffix = rng.choice([".csv"] * 8 + [".CSV", "", ".tar.gz", ".txt"])
    path = work / random_name(rng, suffix)
    path.write_bytes(csv_bytes(rng))
    if rng.random() < 0.1:  # a directory holding the CSV
        load_and_check(work, rng)
    else:
        load_and_check(path, rng)


# ------------------------------------------------------------------------------------------- folder

CLASS_NAMES = ["angry", "Anger", "disgusted", "fear", "happy", "3_happy", "sadness", "surprised", "neutral",
               "contempt", "bored", "7", "0", ".hidden", "__MACOSX", "Happy "]
SPLIT_NAMES = ["train", "test", "val", "Training", "PublicTest", "validation", "misc"]
MODES = ["L", "RGB", "RGBA", "LA", "P", "1", "I", "I;16", "F", "CMYK", "YCbCr", "PA", "HSV", "I;16B"]
FORMATS = ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM", "ICO", "TGA"]


def image_bytes(rng: random.Random) -> bytes:
    """A small image in a random mode and format (PNG when the format cannot hold the mode)."""
    from PIL import Image

    size = (rng.randrange(1, 90), rng.randrange(1, 90))
    mode = rng.choice(MODES)
    array = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, size[::-1] + (4,), dtype=np.uint8)
    base = Image.fromarray(array, "RGBA")
    try:
        image = base.convert(mode) if mode not in ("I;16", "I;16B", "PA", "HSV") else (
            base.convert("L").convert(mode) if mode != "PA" else base.convert("P").convert("PA"))
    except (ValueError, OSError):
        image = base.convert("L")
    buffer = io.BytesIO()
    for fmt in (rng.choice(FORMATS), "PNG", "TIFF"):
        try:
            image.save(buffer, format=fmt)
            return buffer.getvalue()
        except (OSError, ValueError, KeyError, TypeError):
            buffer = io.BytesIO()
    return buffer.getvalue()


def _entry(rng: random.Random, folder: Path, root: Path) -> None:
    name = random_name(rng, rng.choice([".png", ".jpg", "", ".txt", ".PNG"]))
    path = folder / name
    kind = rng.random()
    if any(os.path.lexists(p) for p in (path, folder / ("." + name), folder / (name + "-link"))):
        return  # the name is taken (names repeat); the tree is random enough without it
    if kind < 0.45:
        path.write_bytes(image_bytes(rng))
    elif kind < 0.6:
        path.write_bytes(mutate(rng, image_bytes(rng)))
    elif kind < 0.65:
        path.write_bytes(rng.randbytes(rng.randrange(0, 200)))
    elif kind < 0.68:
        path.write_bytes(b"")
    elif kind < 0.72:
        (folder / ("." + name)).write_bytes(b"hidden")
    elif kind < 0.76:
        path.symlink_to(folder / "does-not-exist")
    elif kind < 0.79:
        path.symlink_to(path)  # loops on itself
    elif kind < 0.82:
        path.symlink_to(rng.choice([folder, root, folder.parent]))  # a folder symlink, possibly a loop
    elif kind < 0.85:
        os.mkfifo(path)
    elif kind < 0.9:
        path.mkdir()
        if rng.random() < 0.7:
            _entry(rng, path, root)
    else:
        path.write_bytes(image_bytes(rng))
        (folder / (name + "-link")).symlink_to(path)


def make_tree(rng: random.Random, root: Path) -> None:
    """A random image tree under ``root`` (see the module docstring)."""
    layout = rng.choice(["class", "class", "split", "split", "mixed", "empty"])
    if layout == "empty":
        return
    tops = [root / rng.choice(SPLIT_NAMES) for _ in range(rng.randrange(1, 3))] if layout != "class" else [root]
    if layout == "mixed":
        tops.append(root)
    for top in tops:
        for _ in range(rng.randrange(0, 4)):
            folder = top / (rng.choice(CLASS_NAMES) if rng.random() < 0.85 else random_name(rng))
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(rng.randrange(0, 4)):
                _entry(rng, folder, root)
        if rng.random() < 0.2:
            _entry(rng, top if top.exists() else root, root)


def folder_case(rng: random.Random, work: Path) -> None:
    root = work / "data"
    root.mkdir()
    try:
        make_tree(rng, root)
    except OSError:  # the generator tripped over its own random names (a file where it wanted a folder)
        pass  # the tree made so far is the case
    load_and_check(root, rng)


# --------------------------------------------------------------------------------------------- spec

SPEC_FIELDS = ("labels", "input_size", "channels", "mean", "std", "color_order", "arch", "precision", "extra")


def json_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, 1, 3, -1, 7, 48, 4096, 4097, 10**30, -(10**30), 10**400, rng.randrange(-1000, 1000)])
    if kind == 3:
        return rng.choice([0.0, -0.0, 0.5, 1e-320, 1e308, float("nan"), float("inf"), -float("inf"), rng.random()])
    if kind in (4, 5):
        return rng.choice(JUNK_FIELDS + ["happy", "gray", "rgb", "bgr", "fp32", "int8", "\ud800"])
    if kind in (6, 7):
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    return {rng.choice(SPEC_FIELDS + ("spec", "x", "")): json_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def spec_text(rng: random.Random) -> str:
    from edgefer.spec import ModelSpec

    kind = rng.random()
    if kind < 0.05:
        return "[" * rng.randrange(1, 200000)
    if kind < 0.1:
        return '{"labels": ["a", "b"], "input_size": ' + "9" * rng.randrange(1, 6000) + "}"
    if kind < 0.2:
        return json.dumps(json_value(rng))
    good = ModelSpec().to_dict()
    for _ in range(rng.randrange(0, 4)):
        field = rng.choice(SPEC_FIELDS + ("spec_version",))
        if rng.random() < 0.2:
            good.pop(field, None)
        else:
            good[field] = json_value(rng)
    return json.dumps({"spec": good} if rng.random() < 0.2 else good)


def spec_case(rng: random.Random, work: Path) -> None:
    from edgefer.spec import ModelSpec, read_sidecar

    text = spec_text(rng)
    try:
        spec = ModelSpec.from_json(text, source="fuzz.json")
        assert ModelSpec.from_json(spec.to_json()).to_json() == spec.to_json(), "spec does not survive its JSON"
    except EdgeferError:
        pass
    data = text.encode("utf-8", errors="surrogatepass")
    sidecar = work / random_name(rng, ".json")
    sidecar.write_bytes(mutate(rng, data) if rng.random() < 0.5 else data)
    read_sidecar(work / "m.engine", sidecar=sidecar)


# ------------------------------------------------------------------------------------------ predict

DTYPES = [np.uint8] * 4 + [np.uint16, np.int32, np.int64, np.float32, np.float64, np.float16, np.bool_,
                           np.complex64, object, np.int8]


def random_input(rng: random.Random):
    """A random "face" argument: arrays of odd shapes, dtypes and values, lists (ragged too), scalars."""
    gen = np.random.default_rng(rng.randrange(2**32))
    kind = rng.random()
    if kind < 0.1:
        return rng.choice([None, 3, "face.png", [], [[]], b"\x00", {"a": 1}, 1.5])
    if kind < 0.25:
        return [random_input(rng) if rng.random() < 0.3 else gen.integers(0, 256, (rng.randrange(1, 60),) * 2,
                                                                               dtype=np.uint8)
                for _ in range(rng.randrange(0, 4))]
    h, w = rng.choice([0, 1, 2, 3, 17, 48, 64, 200]), rng.choice([0, 1, 3, 48, 97])
    shape = rng.choice([(h, w), (h, w, 1), (h, w, 3), (h, w, 4), (h, w, 2), (3, h, w), (rng.randrange(0, 5), h, w),
                        (rng.randrange(0, 3), h, w, 3), (h,), (), (1, 1, h, w)])
    dtype = rng.choice(DTYPES)
    values = gen.normal(128, 200, shape)
    if rng.random() < 0.2 and values.size:
        values.flat[gen.integers(0, values.size, 3)] = rng.choice([np.nan, np.inf, -np.inf, 1e30, -5])
    try:
        with np.errstate(all="ignore"):  # NaN / 1e30 cast to integers: whatever comes out is the input
            return values.astype(dtype)
    except (ValueError, OverflowError):
        return values


def predict_case(recognizer):
    def case(rng: random.Random, work: Path) -> None:
        faces = random_input(rng)
        prediction = recognizer.predict(faces, color=rng.choice(["bgr", "bgr", "rgb", "gray", "xyz"]))
        probs = np.asarray(prediction.probs)
        assert np.isfinite(probs).all(), "non-finite probabilities"
        assert probs.ndim == 2 and np.allclose(probs.sum(axis=1), 1, atol=1e-4), "probabilities do not sum to 1"
    return case


# --------------------------------------------------------------------------------------------- runner


def escape_kind(exc: BaseException) -> str:
    """Exception type and the innermost frame in edgefer (else the innermost frame): one key per bug."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/edgefer/" in f.filename.replace(os.sep, "/")]
    frame = (ours or frames or [None])[-1]
    where = f"{Path(frame.filename).name}:{frame.lineno} {frame.name}" if frame else "?"
    return f"{type(exc).__name__} at {where}"


def run_target(target: str, make_case, cases: int, seed: int, start: int = 0, progress_every: int = 0) -> dict:
    escapes: dict = {}
    accepted = rejected = 0
    clock = time.perf_counter()
    for i in range(start, start + cases):
        rng = random.Random(f"{seed}:{target}:{i}")
        work = Path(tempfile.mkdtemp(prefix="edgefer-fuzz-"))
        try:
            make_case(rng, work)
            accepted += 1
        except EdgeferError as exc:
            try:
                str(exc).encode("utf-8")  # the message must print (no lone surrogates from file names)
                rejected += 1
            except UnicodeEncodeError:
                entry = escapes.setdefault(f"unprintable message: {escape_kind(exc)}", {
                    "count": 0, "first_case": i, "message": ascii(str(exc))[:300],
                    "traceback": "".join(traceback.format_exception(exc))[-4000:]})
                entry["count"] += 1
        except (Exception, RecursionError) as exc:  # noqa: BLE001 - counting what escapes is the point
            kind = escape_kind(exc)
            entry = escapes.setdefault(kind, {"count": 0, "first_case": i, "message": str(exc)[:300],
                                              "traceback": "".join(traceback.format_exception(exc))[-4000:]})
            entry["count"] += 1
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if progress_every and (i - start + 1) % progress_every == 0:
            print(f"  {target}: {i - start + 1}/{cases} cases, {sum(e['count'] for e in escapes.values())} escapes",
                  file=sys.stderr, flush=True)
    return {"cases": cases, "start": start, "accepted": accepted, "rejected_with_edgefer_error": rejected,
            "escapes": sum(e["count"] for e in escapes.values()), "escape_kinds": escapes,
            "wall_s": round(time.perf_counter() - clock, 1)}


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__}


TARGETS = ("csv", "folder", "spec", "predict-onnx", "predict-openvino")
_WORKER: dict = {}


def _case_maker(target: str, models: dict | None):
    if target in ("csv", "folder", "spec"):
        return {"csv": csv_case, "folder": folder_case, "spec": spec_case}[target]
    if target not in _WORKER:  # one recognizer per process
        from edgefer.runtime import EmotionRecognizer

        _WORKER[target] = predict_case(EmotionRecognizer.open(models[target.split("-")[1]]))
    return _WORKER[target]


def _chunk(args) -> dict:
    target, models, cases, seed, start = args
    return run_target(target, _case_maker(target, models), cases, seed, start)


def run_parallel(target: str, models: dict | None, cases: int, seed: int, start: int, jobs: int) -> dict:
    """``run_target`` over ``jobs`` processes (case ranges of ~1000), merged: the same cases and results as one
    process, in less wall time."""
    if jobs == 1:
        return run_target(target, _case_maker(target, models), cases, seed, start, progress_every=max(cases // 10, 1000))
    from concurrent.futures import ProcessPoolExecutor

    size = max(1, min(1000, -(-cases // jobs)))
    chunks = [(target, models, min(size, start + cases - first), seed, first)
              for first in range(start, start + cases, size)]
    clock = time.perf_counter()
    merged = {"cases": cases, "start": start, "accepted": 0, "rejected_with_edgefer_error": 0, "escapes": 0,
              "escape_kinds": {}}
    with ProcessPoolExecutor(jobs) as pool:
        for done, part in enumerate(pool.map(_chunk, chunks), 1):
            for key in ("accepted", "rejected_with_edgefer_error", "escapes"):
                merged[key] += part[key]
            for kind, entry in part["escape_kinds"].items():
                if kind in merged["escape_kinds"]:
                    merged["escape_kinds"][kind]["count"] += entry["count"]
                else:
                    merged["escape_kinds"][kind] = dict(entry)
            print(f"  {target}: {sum(c[2] for c in chunks[:done])}/{cases} cases, {merged['escapes']} escapes",
                  file=sys.stderr, flush=True)
    merged["wall_s"] = round(time.perf_counter() - clock, 1)
    return merged


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1000, help="cases per target")
    parser.add_argument("--target", choices=TARGETS + ("all",), default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="first case number (to replay one case)")
    parser.add_argument("--out", type=Path, default=Path("fuzz.json"), help="JSON summary")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "edgefer-fuzz-models")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (results do not depend on it)")
    args = parser.parse_args(argv)
    if args.cases < 1 or args.seed < 0 or args.start < 0 or args.jobs < 1:
        parser.error("--cases and --jobs must be at least 1, --seed and --start non-negative")
    from edgefer.fileio import write_json

    targets = TARGETS if args.target == "all" else (args.target,)
    models = build_tiny_models(args.work_dir) if any(t.startswith("predict") for t in targets) else None
    command = "python benchmarks/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:])
    summary = {"command": command, "seed": args.seed, "machine": machine(), "targets": {}}
    for target in targets:
        result = run_parallel(target, models, args.cases, args.seed, args.start, args.jobs)
        summary["targets"][target] = result
        print(f"{target}: {result['cases']} cases, {result['accepted']} accepted, "
              f"{result['rejected_with_edgefer_error']} rejected with EdgeferError, {result['escapes']} escapes "
              f"({len(result['escape_kinds'])} kinds), {result['wall_s']} s")
        for kind, entry in result["escape_kinds"].items():
            print(f"  {entry['count']:6d} x {kind} (first case {entry['first_case']}): {entry['message'][:120]}")
        write_json(args.out, summary)
    print(f"wrote {args.out} ({summary['machine']['cpu']})")
    return 1 if any(r["escapes"] for r in summary["targets"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
