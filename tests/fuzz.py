"""Fuzz edgefer's input handling: only ``EdgeferError`` subclasses may escape, whatever the input.

    python -m tests.fuzz --cases 10000 --target csv --seed 0 --out fuzz-csv.json
    python -m tests.fuzz --cases 2000 --target all
    python tests/fuzz.py --cases 10000 --target options --jobs 2

(from the repository root; ``tests/test_fuzz_*.py`` import it as ``tests.fuzz`` and run a few cases per target).

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
  options          every numeric option of every command (found by walking the CLI) with NaN, +-inf, huge,
                   negative, zero and non-numbers: exit 2 and one printable line ``edgefer: error: ...``;
  names            file names with control characters (newline, CR, escape sequences, U+2028, bytes that are not
                   UTF-8) as inputs and outputs of data inspect/synth, info and eval: an error stays one line;
  outputs          every writing command's output at a FIFO, a socket, a character device, symlinks, a directory,
                   a path under a file, with and without --exist-ok: one line, and the special file survives;
  artefacts        ``edgefer info`` and ``EmotionRecognizer.open`` on broken ONNX files, IRs (dims that are not
                   numbers, ports missing, HTML, entity bombs, specs replaced) and sidecars, and
                   ``CalibrationSet.load`` on broken calibration bundles (torch-free seed files);
  runtime-args     ``EmotionRecognizer.open`` / ``predict`` / ``predict_frame`` with arguments of the wrong type:
                   bytes paths, backend=5, color=['bgr'], np.matrix, detectors returning None, NaN or 3 numbers.

Every case draws from ``random.Random(f"{seed}:{target}:{case}")``, so ``--seed S --start I --cases 1``
replays case I. Accepted inputs are also checked (uint8 48x48 images, labels in range, printable ids and a
JSON-serialisable report; a spec survives its own JSON). An escape is any other exception or failed check;
the JSON summary lists each kind (exception type and the innermost edgefer frame) with its count, first
case and traceback, plus cases, wall time and machine.
"""

from __future__ import annotations

import argparse
import contextlib
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
import warnings
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


# ------------------------------------------------------------------------------------- the command line


class CliRejected(EdgeferError):
    """``edgefer ARGV`` ended as a user error should: exit 2 and one line (counted as rejected)."""


def run_cli(argv: list, ok_codes=(0, 2)):
    """Run ``edgefer ARGV`` in this process. An exception that leaves the command is raised again (an escape);
    so is an exit code outside ``ok_codes`` and an error that is not exactly one printable line on stderr
    ``edgefer: error: ...``. A proper user error raises ``CliRejected``."""
    from click.testing import CliRunner

    from edgefer.cli import main

    result = CliRunner().invoke(main, [os.fspath(a) if isinstance(a, Path) else a for a in argv])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in ok_codes, f"exit {result.exit_code}: {result.output[-300:]!r}"
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgefer: error: "), f"not one error line: {result.stderr!r}"
        assert lines[0].isprintable(), f"control characters in the error line: {lines[0]!r}"
        raise CliRejected(lines[0])
    return result


NUMBERS = ["nan", "NaN", "inf", "-inf", "+inf", "-1", "0", "1", "2", "-0", "0.5", "1e308", "1e29", "1e400",
           "1000000000000", str(2**63), str(2**32), "-1e-300", "1e-300", "abc", "", " 3", "1_0", "0x10", "3.0",
           "\u0663", "1e", "--1", "4294967295", "4294967296"]


def _numeric_options() -> list:
    """(command words, option) for every option of every command whose value is a number."""
    import click

    from edgefer.cli import COMMANDS, main
    from edgefer.cli.options import Number

    found, ctx = [], click.Context(main)
    for name in sorted(COMMANDS):
        command = main.get_command(ctx, name)
        subs = sorted(command.commands.items()) if isinstance(command, click.Group) else [("", command)]
        for sub, cmd in subs:
            words = [name, sub] if sub else [name]
            for param in cmd.params:
                numeric = isinstance(param.type, (Number, click.types.IntParamType, click.types.FloatParamType))
                if isinstance(param, click.Option) and numeric and not param.is_flag:
                    found.append((tuple(words), max(param.opts, key=len)))
    return found


def _missing_inputs(words: tuple, work: Path) -> list:
    """Arguments that make ``words`` fail right after parsing (missing inputs, an output that exists), so a
    valid number never starts real work."""
    missing, taken = work / "missing", work / "taken.csv"
    taken.write_text("x")
    return {
        ("data", "synth"): ["--out", taken], ("data", "inspect"): [missing],
        ("train",): ["--data", missing, "--out", work / "run"], ("eval",): ["--model", missing],
        ("calibrate",): ["--data", missing, "--out", work / "calib"],
        ("export",): ["--model", missing, "--target", "onnx", "--out", work / "export"],
        ("build-engine",): [missing / "m.onnx"], ("predict",): [missing, "--model", missing / "m.onnx"],
        ("bench",): ["--model", missing, "--data", missing, "--out", work / "bench"],
        ("qat",): ["--from", missing, "--out", work / "qat"], ("info",): [missing / "m.onnx"],
        ("serve",): [missing / "m.onnx"],
    }[words]


_OPTIONS: list = []


def options_case(rng: random.Random, work: Path) -> None:
    """One numeric option of one command with an odd value (NaN, +-inf, huge, negative, not a number): exit 2
    and one line, never a traceback or an accepted value that starts work."""
    if not _OPTIONS:
        _OPTIONS.extend(_numeric_options())
    words, option = rng.choice(_OPTIONS)
    value = rng.choice(NUMBERS) if rng.random() < 0.8 else repr(rng.uniform(-1e6, 1e6) * rng.choice([1, 1e-9, 1e9]))
    run_cli([*words, *_missing_inputs(words, work), option, value], ok_codes=(2,))


CONTROL = ["\n", "\r", "\r\n", "\x1b[31m", "\t", "\x7f", "\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x08", "\x01"]


def control_name(rng: random.Random, suffix: str = "") -> str:
    """A file name holding control characters (and at times bytes that are not UTF-8)."""
    parts = [rng.choice(["f", "faces", "a b", "\u00e9", os.fsdecode(rng.choice(NON_UTF8_NAMES))])]
    for _ in range(rng.randrange(1, 4)):
        parts += [rng.choice(CONTROL), str(rng.randrange(100))]
    return "".join(parts) + suffix


def tiny_csv(rng: random.Random, rows: int = 12, bad: bool = False) -> str:
    lines = ["emotion,pixels,Usage"]
    for i in range(rows):
        label = rng.randrange(7) if not (bad and i == rows - 1) else rng.choice([9, -1, "x"])
        lines.append(f"{label},{_pixels(rng) if rng.random() < 0.9 else ' '.join(['1'] * 2304)},"
                     f"{rng.choice(['Training', 'Training', 'PublicTest', 'PrivateTest'])}")
    return "\n".join(lines) + "\n"


def names_case(rng: random.Random, work: Path) -> None:
    """Commands given files whose names hold control characters: an error stays one printable line."""
    kind = rng.randrange(5)
    path = work / control_name(rng, rng.choice([".csv", ".json", ".onnx", ".xml", ""]))
    if kind == 0:  # missing
        run_cli(["data", "inspect", path] + (["--skip-bad"] if rng.random() < 0.5 else []))
    elif kind == 1:  # a CSV, maybe with a bad row
        path.write_text(tiny_csv(rng, rng.randrange(1, 12), bad=rng.random() < 0.7))
        run_cli(["data", "inspect", path, "--json"] + (["--skip-bad"] if rng.random() < 0.3 else []))
    elif kind == 2:  # an output under a file, or an output that exists
        path.write_text("x")
        target = path / "faces.csv" if rng.random() < 0.5 else path
        run_cli(["data", "synth", "--out", target, "--n", "3"])
    elif kind == 3:  # a model file that is not one
        path.write_bytes(rng.randbytes(rng.randrange(0, 64)))
        run_cli(["info", path] + (["--json"] if rng.random() < 0.5 else []))
    else:  # eval's --json onto a directory / under a file
        path.mkdir()
        run_cli(["eval", "--model", work / "missing", "--json", path if rng.random() < 0.5 else path / "x" / "e.json"])


# ----------------------------------------------------------------------------------- outputs that are not files

OUTPUT_KINDS = ("fifo", "socket", "device", "symlink-to-fifo", "dangling-symlink", "directory", "under-a-file",
                "new")


def _special(kind: str, path: Path):
    """Make ``path`` a ``kind`` of thing; return what must keep being there (its file type), or None."""
    import socket
    import stat

    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "device":
        try:  # like /dev/null (1, 3): reading and writing do nothing, so a bug cannot hurt
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except (PermissionError, OSError):
            os.mkfifo(path)
    elif kind == "symlink-to-fifo":
        os.mkfifo(path.with_name(path.name + ".fifo"))
        path.symlink_to(path.name + ".fifo")
    elif kind == "dangling-symlink":
        path.symlink_to("nowhere/at/all")
    elif kind == "directory":
        path.mkdir()
    elif kind == "under-a-file":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.joinpath("file").write_text("x")
        return None
    return stat.S_IFMT(os.lstat(path).st_mode) if os.path.lexists(path) else None


def outputs_case(rng: random.Random, work: Path) -> None:
    """Every writing command pointed at a FIFO, a socket, a device, a symlink, a directory or a path under a
    file, with and without --exist-ok: refused in one line (or written as a regular file where that is
    right), and a FIFO, socket or device is never replaced by a file."""
    kind = rng.choice(OUTPUT_KINDS)
    name = rng.choice(["out.csv", "out.json", "out", "out.jsonl"])
    path = work / "file" / name if kind == "under-a-file" else work / name
    before = _special(kind, path)
    csv = work / "faces.csv"
    csv.write_text(tiny_csv(rng, 12))
    missing = work / "missing"
    argv = rng.choice([
        ["data", "synth", "--out", path, "--n", "3"],
        ["data", "inspect", csv, "--skip-bad", "--manifest", path],
        ["eval", "--model", missing, "--json", path],
        ["predict", missing, "--model", missing / "m.onnx", "--jsonl", path],
        ["calibrate", "--data", missing, "--out", path],
        ["export", "--model", missing, "--target", "onnx", "--out", path],
        ["bench", "--model", missing, "--data", missing, "--out", path],
        ["qat", "--from", missing, "--out", path],
        ["train", "--data", missing, "--out", path],
        ["build-engine", missing / "m.onnx", "--out", path],
    ])
    import stat

    try:
        run_cli(argv + (["--exist-ok"] if rng.random() < 0.5 else []))
    finally:  # also after a proper refusal: the special file must still be there
        if before is not None and kind not in ("directory", "dangling-symlink"):
            assert os.path.lexists(path) and stat.S_IFMT(os.lstat(path).st_mode) == before, \
                f"{kind} at the output path was replaced"
            if kind == "symlink-to-fifo":
                assert stat.S_ISFIFO(os.stat(path).st_mode), "the FIFO behind the symlink was replaced"


# ------------------------------------------------------------------------- broken model and calibration files

_SEEDS: dict = {}


def artefact_seeds(folder: Path) -> dict:
    """Valid files to break, made without torch: a tiny ONNX model (spec embedded), the same without its spec
    plus a sidecar, its OpenVINO IR, and a calibration bundle: {"onnx", "plain", "sidecar", "xml", "bin",
    "calib"} (paths)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgefer.data import synthesize
    from edgefer.export.calibration import CalibrationSet
    from edgefer.spec import ModelSpec, embed_in_onnx

    folder.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec(input_size=8, channels=1, mean=(0.5,), std=(0.5,), arch="fuzz")
    weights = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.1, (64, 7)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "fuzz", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 7])], [weights])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    plain = folder / "plain.onnx"
    onnx.save(proto, str(plain))
    (folder / "plain.json").write_text(spec.to_json())
    embed_in_onnx(proto, spec)
    onnx.save(proto, str(folder / "model.onnx"))
    paths = {"onnx": folder / "model.onnx", "plain": plain, "sidecar": folder / "plain.json"}
    try:
        from edgefer.export.openvino import to_ir

        to_ir(folder / "model.onnx", folder / "model.xml", spec)
        paths.update(xml=folder / "model.xml", bin=folder / "model.bin")
    except EdgeferError:  # OpenVINO not installed: no IR cases
        pass
    from edgefer.data import write_fer_csv
    from edgefer.export.calibration import from_data

    faces = write_fer_csv(folder / "faces.csv", synthesize(80, seed=0))
    calib = from_data(faces, 14, "stratified", 0, 0)  # floor 0: no under-representation warning
    assert isinstance(calib, CalibrationSet)
    paths["calib"] = calib.save(folder / "calib")
    return paths


def _broken_xml(rng: random.Random, text: str) -> str:
    import re

    choice = rng.randrange(6)
    if choice == 0:  # a dimension that is not a number
        dims = [m.start() for m in re.finditer(r"<dim>", text)]
        if dims:
            at = rng.choice(dims) + len("<dim>")
            end = text.index("</dim>", at)
            return text[:at] + rng.choice(["abc", "", "-1", "1e3", "99999999999999999999", " 1", "?", "0"]) + text[end:]
    if choice == 1:  # a port removed
        ports = [m.start() for m in re.finditer(r"<port ", text)]
        if ports:
            at = rng.choice(ports)
            return text[:at] + text[text.index("</port>", at) + len("</port>"):]
    if choice == 2:  # not an IR
        return rng.choice(["<html><body>hi</body></html>", "", "<?xml version='1.0'?><net/>", "not xml at all",
                           '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><x>&b;</x>'])
    if choice == 3:  # the embedded spec replaced
        return re.sub(r'value="\{[^"]*\}"', lambda m: 'value="' + spec_text(rng).replace('"', "&quot;")[:4000] + '"',
                      text, count=1)
    return mutate(rng, text.encode()).decode("utf-8", errors="replace")


def artefacts_case(rng: random.Random, work: Path) -> None:
    """``edgefer info`` and ``EmotionRecognizer.open`` (and a prediction) on broken ONNX files, IRs and sidecars,
    ``CalibrationSet.load`` on broken bundles: only EdgeferError escapes."""
    seeds = _SEEDS
    kind = rng.choice([k for k in ("onnx", "sidecar", "xml", "calib") if k in seeds or k == "sidecar"])
    if kind == "onnx":
        model = work / "model.onnx"
        data = seeds["onnx"].read_bytes()
        model.write_bytes(mutate(rng, data) if rng.random() < 0.7 else data[: rng.randrange(len(data))])
    elif kind == "sidecar":
        model = work / "model.onnx"
        shutil.copy(seeds["plain"], model)
        text = spec_text(rng).encode("utf-8", errors="surrogatepass")
        from edgefer.spec import sidecar_path

        sidecar_path(model).write_bytes(mutate(rng, text) if rng.random() < 0.3 else
                                        rng.choice([text, b"\xff\xfe", b"", b"[]", b"null"]))
    elif kind == "xml":
        model = work / "model.xml"
        model.write_text(_broken_xml(rng, seeds["xml"].read_text(encoding="utf-8")), encoding="utf-8")
        data = seeds["bin"].read_bytes()
        (work / "model.bin").write_bytes(data if rng.random() < 0.7 else mutate(rng, data))
    else:
        from edgefer.export.calibration import CalibrationSet

        bundle = work / "calib"
        shutil.copytree(seeds["calib"], bundle)
        what = rng.randrange(4)
        if what == 0:
            path = bundle / "calib.npz"
            path.write_bytes(mutate(rng, path.read_bytes()))
        elif what == 1:
            (bundle / "manifest.json").write_text(json.dumps(json_value(rng)))
        elif what == 2:
            with open(bundle / "calib.npz", "wb") as f:
                arrays = {name: rng.choice([np.zeros(()), np.zeros((0, 48, 48), np.uint8), np.array(["x"]),
                                            np.arange(3), np.zeros((2, 48, 48), np.float32)])
                          for name in rng.sample(["images", "labels", "ids", "other"], rng.randrange(0, 4))}
                np.savez(f, **arrays) if rng.random() < 0.8 else np.save(f, np.zeros(3))
        else:
            (bundle / "calib.npz").write_bytes(b"")
        CalibrationSet.load(bundle)
        return
    run_cli(["info", model] + (["--json"] if rng.random() < 0.5 else []))
    from edgefer.runtime import EmotionRecognizer

    with EmotionRecognizer.open(model, threads=1) as recognizer:
        probs = recognizer.predict(np.full((48, 48), 100, np.uint8)).probs
        assert np.isfinite(probs).all(), "non-finite probabilities"


# ------------------------------------------------------------------------------- runtime argument types

ODD_VALUES = [None, 5, -1, 1.5, float("nan"), "", "bgr", b"bgr", ["bgr"], ("rgb",), {"a": 1}, True, object(),
              np.float32(1), np.array([1, 2]), "x" * 300]


def _matrix(array):
    """``np.matrix(array)`` without numpy's PendingDeprecationWarning: the harness makes one on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.matrix(array)


def _detector_output(rng: random.Random):
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice([None, 5, "0 0 40 40", {"box": 1}, b"x", 1.5])
    if kind == 1:
        return np.asarray(rng.choice([np.zeros((1, 3)), np.zeros((2, 5)), np.zeros((0, 4)), np.zeros(4),
                                      np.full((1, 4), np.nan), np.full((1, 4), 1e300)]))
    boxes = []
    for _ in range(rng.randrange(0, 4)):
        box = [rng.choice([0, 5, 10, 40, -10, 1e300, float("nan"), float("inf"), -float("inf"), 2**70, "a", None,
                           0.5, np.int64(3)]) if rng.random() < 0.3 else rng.randrange(0, 60)
               for _ in range(rng.choice([4, 4, 4, 3, 5, 0]))]
        boxes.append(tuple(box) if rng.random() < 0.5 else box)
    return boxes


def runtime_args_case(recognizer, model: Path):
    def case(rng: random.Random, work: Path) -> None:
        from edgefer.runtime import EmotionRecognizer

        kind = rng.randrange(4)
        if kind == 0:  # open with odd arguments
            path = rng.choice([model, str(model), os.fsencode(model), 5, None, work / "missing.onnx", work,
                               model.with_suffix(".txt")])
            backend = rng.choice([None, None, "onnxruntime", "ort", "openvino", "tensorrt", "x", 5, b"onnxruntime",
                                  ["onnxruntime"], True, ""])
            threads = rng.choice([None, None, 1, 0, -1, 1.5, "2", True, 10**9])
            EmotionRecognizer.open(path, backend=backend, threads=threads).close()
            return
        if kind == 1:  # predict with an odd color and odd faces
            faces = random_input(rng) if rng.random() < 0.5 else rng.choice(
                [_matrix(np.full((48, 48), 7, np.uint8)), [_matrix(np.zeros((30, 30)))], np.zeros((48, 48))])
            prediction = recognizer.predict(faces, color=rng.choice(["bgr", "gray", *ODD_VALUES]))
        else:  # predict_frame with a detector returning anything
            frame = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (64, 80, 3), dtype=np.uint8)
            output = _detector_output(rng)
            prediction = recognizer.predict_frame(frame if rng.random() < 0.9 else _matrix(frame[..., 0]),
                                                  detector=lambda f: output,
                                                  color=rng.choice(["bgr", "bgr", "rgb", *ODD_VALUES[:4]]),
                                                  min_size=rng.choice([0, 1, 24])).prediction
            if prediction is None:
                return
        probs = np.asarray(prediction.probs)
        assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1, atol=1e-4), "bad probabilities"
    return case


# --------------------------------------------------------------------------------------------- runner


def escape_kind(exc: BaseException) -> str:
    """Exception type and the innermost frame in edgefer (else the innermost frame): one key per bug."""
    if isinstance(exc, WarningEscape):
        return f"{exc} at {exc.where}"
    if isinstance(exc, OutputEscape):
        return f"printed: {exc.where}"
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/edgefer/" in f.filename.replace(os.sep, "/")]
    frame = (ours or frames or [None])[-1]
    where = f"{Path(frame.filename).name}:{frame.lineno} {frame.name}" if frame else "?"
    return f"{type(exc).__name__} at {where}"


class WarningEscape(Exception):
    """A RuntimeWarning (numpy's overflow, invalid value, divide by zero ...) reached the user during a case."""


def _raise_runtime_warning(caught: list) -> None:
    """Count a case that let a RuntimeWarning out as an escape (even when it then ended in a proper error): odd
    input must give one line, never a numpy warning with a source line before it."""
    for item in caught:
        if issubclass(item.category, RuntimeWarning):
            exc = WarningEscape(f"{item.category.__name__}: {item.message}")
            exc.where = f"{Path(item.filename).name}:{item.lineno}"
            raise exc


class OutputEscape(Exception):
    """A case printed on the process's stdout or stderr (a native library's log, a third-party print)."""


# targets whose cases must print nothing at all (the CLI's own lines are captured by click's runner, so what
# reaches the file descriptors is a library writing past edgefer: OpenVINO frontends, ONNX Runtime, absl)
SILENT_TARGETS = ("artefacts", "runtime-args", "predict-onnx", "predict-openvino", "spec")


@contextlib.contextmanager
def _fd_output(captured: list):
    """Capture file descriptors 1 and 2 (Python's and native writes) for one case into ``captured``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", errors="replace"))


def _raise_output(captured: list) -> None:
    import re

    text = "".join(captured).strip()
    if text:
        exc = OutputEscape(text[:300])
        exc.where = re.sub(r"\d+", "N", text.splitlines()[0])[:80]  # one kind per message, timestamps aside
        raise exc


def run_target(target: str, make_case, cases: int, seed: int, start: int = 0, progress_every: int = 0) -> dict:
    escapes: dict = {}
    accepted = rejected = 0
    clock = time.perf_counter()
    for i in range(start, start + cases):
        rng = random.Random(f"{seed}:{target}:{i}")
        work = Path(tempfile.mkdtemp(prefix="edgefer-fuzz-"))
        try:
            printed: list = []
            try:
                with warnings.catch_warnings(record=True) as caught, \
                        (_fd_output(printed) if target in SILENT_TARGETS else contextlib.nullcontext()):
                    warnings.simplefilter("always", RuntimeWarning)
                    try:
                        make_case(rng, work)
                    finally:
                        _raise_runtime_warning(caught)
            finally:  # also before a proper error: the error must be all the user sees
                _raise_output(printed)
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


CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def machine() -> dict:
    """The CPU (model name, the SIMD flags that matter here), cores, Python and numpy, and the commit measured."""
    import subprocess

    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == (platform.processor() or platform.machine()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"cpu": model, "cpu_flags": [f for f in CPU_FLAGS if f in flags], "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "commit": commit}


TARGETS = ("csv", "folder", "spec", "predict-onnx", "predict-openvino", "options", "names", "outputs", "artefacts",
           "runtime-args")
PLAIN_CASES = {"csv": csv_case, "folder": folder_case, "spec": spec_case, "options": options_case,
               "names": names_case, "outputs": outputs_case}
_WORKER: dict = {}


def _case_maker(target: str, models: dict | None):
    if target in PLAIN_CASES:
        return PLAIN_CASES[target]
    if target in ("artefacts", "runtime-args"):  # torch-free seed files, made once per process
        if not _SEEDS:
            _SEEDS.update(artefact_seeds(Path(tempfile.mkdtemp(prefix="edgefer-fuzz-seeds-"))))
        if target == "artefacts":
            return artefacts_case
        if target not in _WORKER:
            from edgefer.runtime import EmotionRecognizer

            _WORKER[target] = runtime_args_case(EmotionRecognizer.open(_SEEDS["onnx"], threads=1), _SEEDS["onnx"])
        return _WORKER[target]
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
    command = "python -m tests.fuzz " + " ".join(argv if argv is not None else sys.argv[1:])
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
