"""README.md is true: its code blocks run as written, against a small export made here, and the camera example
works with headless OpenCV.

How README blocks are run (the only substitutions):
- The working directory is a fixture directory holding what the pipeline would have made, under the names the
  pipeline writes: ``fer2013.csv`` (600 SYNTHETIC faces), ``runs/v2s`` (a test_efficientnet checkpoint at 32 px),
  ``calib`` (made by README's own ``edgefer calibrate`` line), ``export/trt-int8/model.int8.qdq.onnx`` and
  ``export/ov-int8/model.int8.xml`` (that network quantized to INT8 Q/DQ with ONNX Runtime, and converted to OpenVINO), ``faces/``
  (face crops), ``face.png`` and ``photo.jpg``.
- ``--n N`` of ``edgefer data synth`` becomes ``--n 300`` when N is larger (size only).
- ``edgefer`` lines whose command is in RUN are executed; the others (training, exports, bench: minutes each)
  are parsed against the CLI (every option exists, every value is valid, every input path exists).
- The camera line of README gets a generated video as ``--source`` (there is no camera here).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgefer.spec import FER2013_LABELS
from tests.backends import needs_cv2, needs_onnxruntime, needs_openvino, needs_torch
from tests.cli_models import tiny_models
from tests.runtime_models import SIZE, cartoon_face

pytestmark = [needs_torch, needs_onnxruntime, needs_openvino, needs_cv2]

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
RUN = {"data", "eval", "calibrate", "info", "predict"}
MAX_SYNTH = 300


def blocks(language: str, text: str | None = None) -> list[str]:
    text = README.read_text(encoding="utf-8") if text is None else text
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def command_lines(block: str) -> list[list[str]]:
    """Each command of a shell block as argv (comments dropped, continuation lines joined)."""
    joined = block.replace("\\\n", " ")
    return [argv for argv in (shlex.split(line, comments=True) for line in joined.splitlines()) if argv]


def _sized(argv: list[str]) -> list[str]:
    if argv[1:3] == ["data", "synth"] and "--n" in argv:
        i = argv.index("--n") + 1
        argv = [*argv[:i], str(min(int(argv[i]), MAX_SYNTH)), *argv[i + 1:]]
    return argv


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    import cv2
    import openvino as ov

    from edgefer.data import synthesize, write_fer_csv
    from edgefer.models import save_checkpoint
    from edgefer.spec import embed_in_openvino

    work = tmp_path_factory.mktemp("readme")
    models = tiny_models()
    tiny = models.exported
    data = synthesize(600, seed=0)
    write_fer_csv(work / "fer2013.csv", data, provenance={"n": 600, "seed": 0})
    save_checkpoint(work / "runs" / "v2s", tiny.model, tiny.spec, {"drop_rate": 0.0, "drop_path_rate": 0.0},
                    config={"data": "fer2013.csv", "val_fraction": 0.1, "seed": 0, "img_size": SIZE}, epoch=1)
    qdq = work / "export" / "trt-int8" / "model.int8.qdq.onnx"
    qdq.parent.mkdir(parents=True)
    shutil.copy(models.qdq, qdq)
    ir = ov.convert_model(str(qdq))
    embed_in_openvino(ir, tiny.spec)
    (work / "export" / "ov-int8").mkdir()
    ov.save_model(ir, str(work / "export" / "ov-int8" / "model.int8.xml"))
    (work / "faces").mkdir()
    for i in range(4):
        cv2.imwrite(str(work / "faces" / f"{i}.png"), data.images[i])
    cv2.imwrite(str(work / "face.png"), data.images[0])
    cv2.imwrite(str(work / "photo.jpg"), cartoon_face(150)[0])
    return work


def test_files_named_in_use_in_your_app_are_what_exports_write():
    """The model files README opens are the names edgefer's export and build-engine write."""
    from edgefer.export.tensorrt import engine_path_for

    section = README.read_text(encoding="utf-8").split("## Use in your app", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"model\.[\w.]+\.(?:xml|onnx|engine)", section))
    assert {"model.int8.xml", "model.int8.qdq.onnx", "model.int8.engine"} <= named
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "edgefer" / "export").glob("*.py"))
    for name in named - {"model.int8.engine"}:
        assert f'"{name}"' in sources, f"{name}: no export writes this file"
    assert engine_path_for("export/trt-int8/model.int8.qdq.onnx").name == "model.int8.engine"


def test_python_blocks_run_as_written(workdir, monkeypatch, capsys):
    from edgefer.runtime import EmotionRecognizer

    monkeypatch.chdir(workdir)
    code = blocks("python")
    assert len(code) == 1
    exec(compile(code[0], "README.md", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out.splitlines()
    import cv2

    face = cv2.imread("face.png", cv2.IMREAD_GRAYSCALE)
    expected = EmotionRecognizer.open("export/ov-int8/model.int8.xml").predict(face, color="gray")
    assert printed[0].startswith(f"{expected.labels[0]} [('{expected.labels[0]}', ")
    assert len(printed) == 2 and printed[1].split(")")[1].split()[0] in FER2013_LABELS  # one face found in the photo


def test_shell_blocks_run_or_parse(workdir, monkeypatch):
    import click

    from edgefer.cli import main

    monkeypatch.chdir(workdir)
    ran, parsed = [], []
    for block in blocks("bash"):
        for argv in command_lines(block):
            if argv[0] != "edgefer":
                continue  # make targets and the camera example (tested below)
            argv = _sized(argv)
            if argv[1] in RUN:
                result = CliRunner().invoke(main, argv[1:])
                assert result.exit_code == 0, (argv, result.output[-2000:])
                ran.append(argv)
            else:
                ctx = click.Context(main, info_name="edgefer")
                command = main.get_command(ctx, argv[1])
                assert command is not None, argv
                try:
                    command.make_context(argv[1], argv[2:], parent=ctx)
                except click.UsageError as exc:
                    pytest.fail(f"README: {' '.join(argv)}: {exc.format_message()}")
                parsed.append(argv)
    assert {a[1] for a in ran} == RUN and {a[1] for a in parsed} >= {"train", "export", "build-engine", "bench"}
    assert (workdir / "demo" / "fer_synth.csv").is_file() and (workdir / "calib" / "manifest.json").is_file()
    rows = [json.loads(line) for line in (workdir / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["label"] in FER2013_LABELS for r in rows)
    assert (workdir / "runs" / "v2s" / "eval_test.json").is_file()


def _video(path: Path, frames: int) -> Path:
    import cv2

    face, _ = cartoon_face(150)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (face.shape[1], face.shape[0]))
    for i in range(frames):
        writer.write(face if i % 2 == 0 else np.full_like(face, 30 * i))
    writer.release()
    return path


def _camera_line() -> list[str]:
    lines = [argv for block in blocks("bash") for argv in command_lines(block) if argv[:2] == ["python",
                                                                                          "examples/camera_app.py"]]
    assert len(lines) == 1
    return lines[0]


def test_camera_example_help_and_default_mode(workdir, tmp_path):
    import cv2

    script = ROOT / "examples" / "camera_app.py"
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--show" in done.stdout and "--out" in done.stdout
    argv = _camera_line()
    source = _video(tmp_path / "clip.avi", 4)
    argv[argv.index("--source") + 1] = str(source)  # no camera here: a generated video instead
    argv[argv.index("--max-frames") + 1] = "3"
    done = subprocess.run([sys.executable, str(script), *argv[2:]], capture_output=True, text=True, timeout=180,
                          cwd=workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["1", "2", "3"]
    assert lines[1] == "2 []" and lines[0].startswith("1 [(")  # a face in frames 1 and 3, none in frame 2
    assert lines[3].startswith("3 frames, ") and lines[3].endswith("; wrote annotated.mp4")
    capture = cv2.VideoCapture(str(workdir / "annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    jsonl = tmp_path / "faces.jsonl"
    done = subprocess.run([sys.executable, str(script), "--model", "export/trt-int8/model.int8.qdq.onnx",
                           "--source", str(source), "--out", "", "--jsonl", str(jsonl)],
                          capture_output=True, text=True, timeout=180, cwd=workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [len(r["faces"]) for r in rows] == [1, 0, 1, 0] and rows[0]["faces"][0]["label"] in FER2013_LABELS
    assert rows[0]["faces"][0]["track"] == rows[2]["faces"][0]["track"] == 1  # missed in frame 2, same id after


def test_camera_example_says_when_opencv_has_no_gui(workdir):
    import cv2

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import camera_app
    finally:
        sys.path.remove(str(ROOT / "examples"))
    if camera_app.opencv_has_gui():
        pytest.skip("this OpenCV build has a GUI")
    assert "GUI:" in cv2.getBuildInformation()
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "camera_app.py"), "--model",
                           "export/ov-int8/model.int8.xml", "--show"], capture_output=True, text=True, timeout=60,
                          cwd=workdir)
    assert done.returncode == 2
    assert "--show: this OpenCV build has no GUI (opencv-python-headless" in done.stderr
