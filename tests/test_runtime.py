"""edgefer.runtime on CPU: ONNX Runtime and OpenVINO backends against the torch model they came from,
metadata/sidecar handling, bad models and inputs, batching, thread safety, face detection."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from edgefer.errors import InputError, MissingDependency, ModelError
from edgefer.runtime import EmotionRecognizer, FramePrediction, open_backend
from edgefer.runtime.base import backend_name
from edgefer.spec import FER2013_LABELS, sidecar_path
from tests.backends import needs_cv2, needs_onnxruntime, needs_openvino, needs_torch
from tests.runtime_models import SIZE, cartoon_face, shared_tiny

pytestmark = [needs_torch, needs_onnxruntime, needs_openvino]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return shared_tiny(tmp_path_factory)


@pytest.fixture(scope="session")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 48, 48), dtype=np.uint8)


@pytest.fixture(params=["onnx", "xml"])
def model_path(request, tiny):
    return getattr(tiny, request.param)


def test_parity_with_torch(tiny, images, model_path):
    ref = tiny.torch_logits(images)
    with EmotionRecognizer.open(model_path, threads=1) as rec:
        pred = rec.predict(images, color="gray", return_logits=True)
    assert ref.std() > 0.3 and len(set(ref.argmax(1))) > 1  # spread out, so the comparison means something
    assert np.abs(pred.logits - ref).max() < 1e-3
    assert pred.labels == [FER2013_LABELS[i] for i in ref.argmax(1)]
    assert pred.probs.dtype == np.float32 and np.allclose(pred.probs.sum(1), 1, atol=1e-5)
    assert pred.indices.tolist() == ref.argmax(1).tolist()


def test_openvino_fp32_really_runs_f32(tiny):
    rec = EmotionRecognizer.open(tiny.xml, threads=1)
    assert rec.backend.compiled_model.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    assert rec.backend.compiled_model.get_property("INFERENCE_NUM_THREADS") == 1
    assert rec.backend.precision == "f32"
    import openvino as ov

    bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")  # else OpenVINO falls back to f32
    assert EmotionRecognizer.open(tiny.xml, precision="bf16").backend.precision == ("bf16" if bf16 else "f32")
    with pytest.raises(ModelError, match="precision must be one of f32, bf16, f16"):
        EmotionRecognizer.open(tiny.xml, precision="int4")
    with pytest.raises(ModelError, match="precision='f16' is an OpenVINO option"):
        EmotionRecognizer.open(tiny.onnx, precision="f16")


def test_input_forms_agree(tiny, images):
    rec = EmotionRecognizer.open(tiny.onnx)
    batch = rec.predict(images, color="gray")
    one = rec.predict(images[2], color="gray")
    assert len(one) == 1 and np.allclose(one.probs[0], batch.probs[2], atol=1e-6)
    bgr = np.repeat(images[..., None], 3, axis=-1)  # gray as 3 equal channels: same luma
    assert np.allclose(rec.predict(list(bgr)).probs, batch.probs, atol=1e-5)
    sizes = [images[0], np.zeros((90, 70), np.uint8), np.full((20, 30, 3), 200, np.uint8)]
    assert len(rec.predict(sizes)) == 3
    top = batch.top(2)
    assert top[0][0][0] == batch.labels[0] and top[0][0][1] >= top[0][1][1]
    rows = batch.to_dicts()
    assert rows[0]["label"] == batch.labels[0] and set(rows[0]["probs"]) == set(FER2013_LABELS)
    json.dumps(rows)


def test_batches_split_and_pad(tiny, images):
    ref = EmotionRecognizer.open(tiny.onnx).predict(images, color="gray", return_logits=True).logits
    backend = open_backend(tiny.onnx)
    calls = []
    real = backend._infer
    backend._infer = lambda x: calls.append(len(x)) or real(x)
    backend.min_batch = backend.max_batch = 4  # behave like a model exported with a fixed batch of 4
    rec = EmotionRecognizer(backend)
    out = rec.predict(images, color="gray", return_logits=True).logits
    assert calls == [4, 4]  # 6 = 4 + 2 padded to 4
    assert np.allclose(out, ref, atol=1e-5)
    backend.min_batch, backend.max_batch = 1, 4  # a dynamic profile up to 4: no padding
    calls.clear()
    rec.predict(images[:5], color="gray")
    assert calls == [4, 1]


def test_thread_safety(model_path, images):
    rec = EmotionRecognizer.open(model_path, threads=1)
    work = [images[: 1 + i % len(images), ..., None] for i in range(24)]
    serial = [rec.predict(w, color="gray", return_logits=True).logits for w in work]
    results: dict[int, np.ndarray] = {}

    def worker(start):
        for i in range(start, len(work), 4):
            results[i] = rec.predict(work[i], color="gray", return_logits=True).logits

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(len(work)))
    for i, logits in results.items():
        assert np.allclose(logits, serial[i], atol=1e-5), i


def test_spec_from_sidecar_when_no_metadata(tiny, tmp_path, images):
    plain = tiny.copy_onnx(tmp_path, "plain.onnx", metadata=False)
    with pytest.raises(ModelError, match=r"plain.onnx: no preprocessing metadata.*plain.onnx.json"):
        EmotionRecognizer.open(plain)
    labels = [f"c{i}" for i in range(7)]
    sidecar_path(plain).write_text(json.dumps({"spec": tiny.spec.replace(labels=labels).to_dict()}))
    rec = EmotionRecognizer.open(plain)
    assert rec.labels == labels
    assert rec.predict(images[0], color="gray").labels[0] in labels
    # an explicit sidecar wins over embedded metadata
    other = tmp_path / "other.json"
    other.write_text(json.dumps(tiny.spec.replace(labels=labels).to_dict()))
    assert EmotionRecognizer.open(tiny.onnx, sidecar=other).labels == labels


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(labels=("a", "b", "c", "d", "e")), r"the model has 7 outputs but its spec lists 5 labels"),
        (dict(channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, color_order="rgb"), r"1 channel\(s\) but the spec says channels=3"),
        (dict(input_size=64), r"does not match the spec's input_size=64"),
    ],
)
def test_spec_that_does_not_fit_the_model(tiny, tmp_path, change, message):
    plain = tiny.copy_onnx(tmp_path, "plain.onnx", metadata=False)
    sidecar_path(plain).write_text(tiny.spec.replace(**change).to_json())
    with pytest.raises(ModelError, match=message):
        EmotionRecognizer.open(plain)


def test_bad_model_files(tiny, tmp_path):
    truncated = tmp_path / "trunc.onnx"
    truncated.write_bytes(tiny.onnx.read_bytes()[:4000])
    with pytest.raises(ModelError, match="trunc.onnx: not a loadable ONNX model"):
        EmotionRecognizer.open(truncated)
    foreign = tmp_path / "photo.onnx"
    foreign.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ModelError, match="photo.onnx: not a loadable ONNX model"):
        EmotionRecognizer.open(foreign)
    html = tmp_path / "page.xml"
    html.write_text("<html><body>not a network</body></html>")
    with pytest.raises(ModelError, match="page.xml: not an OpenVINO IR file"):
        EmotionRecognizer.open(html)
    with pytest.raises(ModelError, match="OpenVINO reads .xml IR or .onnx files"):
        EmotionRecognizer.open(_renamed(html, "page.txt"), backend="openvino")
    xml = tmp_path / "cut.xml"
    xml.write_text(tiny.xml.read_text()[:3000])
    shutil.copy(tiny.xml.with_suffix(".bin"), tmp_path / "cut.bin")
    with pytest.raises(ModelError, match="cut.xml: not a loadable OpenVINO model"):
        EmotionRecognizer.open(xml)
    nobin = tmp_path / "nobin.xml"
    shutil.copy(tiny.xml, nobin)
    with pytest.raises(ModelError, match="nobin.bin is missing"):
        EmotionRecognizer.open(nobin)
    badbin = tmp_path / "badbin.xml"
    shutil.copy(tiny.xml, badbin)
    (tmp_path / "badbin.bin").write_bytes(b"\0" * 64)
    with pytest.raises(ModelError, match="badbin.xml: not a loadable OpenVINO model"):
        EmotionRecognizer.open(badbin)
    with pytest.raises(ModelError, match="no such model file"):
        EmotionRecognizer.open(tmp_path / "missing.onnx")


def _renamed(path, name):
    target = path.with_name(name)
    shutil.copy(path, target)
    return target


def test_backend_choice(tiny):
    assert backend_name("a.onnx") == "onnxruntime"
    assert backend_name("a.XML") == "openvino"
    assert backend_name("a.engine") == backend_name("a.plan") == backend_name("x", "trt") == "tensorrt"
    with pytest.raises(ModelError, match=r"cannot tell the backend from the suffix '.pt'"):
        backend_name("model.pt")
    with pytest.raises(ModelError, match="unknown backend 'tflite'"):
        backend_name("a.onnx", "tflite")
    # the file name never decides the labels: an .onnx read by OpenVINO needs the sidecar
    with pytest.raises(ModelError, match="no preprocessing metadata"):
        EmotionRecognizer.open(tiny.onnx, backend="ov")
    with pytest.raises(ModelError, match="device 'cuda' needs CUDAExecutionProvider"):
        EmotionRecognizer.open(tiny.onnx, device="cuda")
    with pytest.raises(ModelError, match="OpenVINO device 'NPU' is not available"):
        EmotionRecognizer.open(tiny.xml, device="npu")
    with pytest.raises(ModelError, match="threads must be a positive integer"):
        EmotionRecognizer.open(tiny.onnx, threads=0)


@pytest.mark.parametrize("module, extra", [("onnxruntime", "onnx"), ("openvino", "openvino")])
def test_missing_runtime_names_the_extra(tiny, monkeypatch, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    path = tiny.onnx if module == "onnxruntime" else tiny.xml
    with pytest.raises(MissingDependency, match=rf"pip install 'edgefer\[{extra}\]'"):
        EmotionRecognizer.open(path)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 48), np.uint8), "empty image"),
        (np.full((48, 48), np.nan, np.float32), "NaN"),
        (np.zeros((2, 48, 48, 4), np.uint8), "4 channels"),
        (np.zeros((48, 48), np.int64), "dtype int64"),
        ([], "empty list"),
        (np.zeros((0, 48, 48), np.uint8), "empty batch"),
        ("face.png", r"got shape \(\)"),
    ],
)
def test_bad_input(tiny, bad, message):
    rec = EmotionRecognizer.open(tiny.onnx)
    with pytest.raises(InputError, match=message):
        rec.predict(bad)


def test_run_checks_prepared_input(tiny):
    rec = EmotionRecognizer.open(tiny.xml)
    assert rec.run(np.zeros((2, 1, SIZE, SIZE), np.float32)).shape == (2, 7)
    assert [(t.name, t.shape, t.dtype) for t in rec.backend.inputs()] == [("input", (None, 1, SIZE, SIZE), np.float32)]
    with pytest.raises(InputError, match=rf"expected a batch of shape \(N, 1, {SIZE}, {SIZE}\), got \(2, 3, {SIZE}"):
        rec.run(np.zeros((2, 3, SIZE, SIZE), np.float32))
    with pytest.raises(InputError, match="expected float32"):
        rec.run(np.zeros((2, 1, SIZE, SIZE), np.float64))
    rec.close()
    rec.close()  # closing twice is harmless
    with pytest.raises(ModelError, match="tiny.xml: this model was closed"):
        rec.predict(np.zeros((48, 48), np.uint8))


def test_predict_frame_with_a_detector(tiny):
    frame = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    rec = EmotionRecognizer.open(tiny.onnx, detector=lambda f: [(10, 20, 50, 50), (150, 100, 40, 40), (0, 0, 5, 5)])
    result = rec.predict_frame(frame)
    # the second box is clipped to the frame (10 x 20 px) and dropped with the 5 px one by min_size=24
    assert [f.box for f in result.faces] == [(10, 20, 50, 50)]
    direct = rec.predict(frame[20:70, 10:60])
    assert result.faces[0].label == direct.labels[0]
    assert result.faces[0].score == pytest.approx(float(direct.probs[0].max()), abs=1e-6)
    assert result.to_dicts()[0]["box"] == [10, 20, 50, 50]
    empty = rec.predict_frame(frame, detector=lambda f: [])
    assert empty == FramePrediction(faces=[]) and len(empty) == 0 and empty.to_dicts() == []
    with pytest.raises(InputError, match="one frame"):
        rec.predict_frame(np.zeros((4, 50, 50), np.uint8))


@needs_cv2
def test_haar_default_detector_finds_a_drawn_face(tiny):
    frame, (x, y, w, h) = cartoon_face(150)
    rec = EmotionRecognizer.open(tiny.onnx)
    result = rec.predict_frame(frame)
    assert len(result.faces) == 1
    bx, by, bw, bh = result.faces[0].box
    assert abs(bx + bw / 2 - (x + w / 2)) < 15 and abs(by + bh / 2 - (y + h / 2)) < 15 and 0.7 < bw / w < 1.5
    assert result.faces[0].label == rec.predict(frame[by : by + bh, bx : bx + bw]).labels[0]
    assert rec.predict_frame(np.zeros((120, 160, 3), np.uint8)).faces == []  # no face: an empty result
    assert rec.predict_frame(frame[..., 1]).faces[0].box == result.faces[0].box  # gray frames too


def test_detector_missing_is_explained(tiny, monkeypatch):
    from edgefer.runtime import faces

    monkeypatch.setitem(sys.modules, "cv2", None)
    rec = EmotionRecognizer.open(tiny.onnx)
    with pytest.raises(MissingDependency, match=r"cv2 is not installed \(needed for face detection\).*edgefer\[camera\]"):
        rec.predict_frame(np.zeros((50, 50), np.uint8))
    fake_cv2 = type(sys)("cv2")
    fake_cv2.__version__ = "5.0.0"
    monkeypatch.setitem(sys.modules, "cv2", fake_cv2)
    with pytest.raises(MissingDependency, match=r"cv2 5.0.0 ships none.*or pass detector="):
        faces.default_detector()


# Run in a fresh interpreter: import the runtime, open both models, predict, report heavy modules loaded.
_PREDICT_SCRIPT = """
import json, sys
import numpy as np
from edgefer.runtime import EmotionRecognizer
images = np.load(sys.argv[1])
logits = [EmotionRecognizer.open(p, threads=1).predict(images, color="gray", return_logits=True).logits.tolist()
          for p in sys.argv[2:]]
print(json.dumps({"logits": logits, "loaded": sorted(m for m in ("torch", "timm", "click", "sklearn", "cv2")
                                                    if m in sys.modules)}))
"""
# Makes torch, timm, click and sklearn uninstallable for the child: any import of them fails as if absent.
_BLOCK_HEAVY = """
import sys
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"torch", "torchvision", "timm", "click", "sklearn"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NotInstalled())
"""


@pytest.mark.parametrize("blocked", [False, True], ids=["torch-installed", "torch-absent"])
def test_runtime_never_needs_torch(tiny, images, tmp_path, blocked):
    import subprocess

    if blocked:  # the blocker really makes torch unimportable
        check = subprocess.run([sys.executable, "-c", _BLOCK_HEAVY + "import torch"], capture_output=True, text=True)
        assert check.returncode == 1 and "No module named 'torch'" in check.stderr
    np.save(tmp_path / "images.npy", images)
    code = (_BLOCK_HEAVY if blocked else "") + _PREDICT_SCRIPT
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "images.npy"), str(tiny.onnx), str(tiny.xml)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []  # not torch, timm, click, sklearn, nor cv2 (no detector was used)
    ref = tiny.torch_logits(images)
    for logits in result["logits"]:
        assert np.abs(np.array(logits) - ref).max() < 1e-3


@needs_cv2
def test_cli_predict_folder_of_crops(tiny, images, tmp_path):
    import cv2
    from click.testing import CliRunner

    from edgefer.cli import main

    folder = tmp_path / "crops"
    (folder / "sub").mkdir(parents=True)
    for i, img in enumerate(images[:5]):
        cv2.imwrite(str(folder / ("sub" if i % 2 else "") / f"{i}.png"), img)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(main, ["predict", str(folder), "--model", str(tiny.xml), "--no-detect",
                                       "--batch-size", "2", "--jsonl", str(out), "--logits"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["source"]).name for r in rows] == ["0.png", "2.png", "4.png", "broken.jpg", "1.png", "3.png"]  # sorted paths
    assert rows[3] == {"source": str(folder / "broken.jpg"), "error": "OpenCV cannot decode this file"}
    expected = EmotionRecognizer.open(tiny.xml).predict(images[:5], color="gray")
    by_name = {Path(r["source"]).stem: r for r in rows if "label" in r}
    assert [by_name[str(i)]["label"] for i in range(5)] == expected.labels
    assert by_name["0"]["probs"]["happy"] == pytest.approx(float(expected.probs[0, 3]), abs=1e-5)
    assert len(by_name["0"]["logits"]) == 7
    # without OpenCV, images are decoded with Pillow: same pixels, same predictions
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "cv2", None)
        result = CliRunner().invoke(main, ["predict", str(folder), "-m", str(tiny.xml), "--no-detect"])
    assert result.exit_code == 0, result.output
    pillow_rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r.get("label") for r in pillow_rows] == [r.get("label") for r in rows]
    assert pillow_rows[3]["error"].startswith("Pillow cannot decode this file")
    # one image to stdout, with face detection (random noise: no face, an explicit empty list)
    result = CliRunner().invoke(main, ["predict", str(folder / "0.png"), "-m", str(tiny.onnx)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[0]) == {"source": str(folder / "0.png"), "faces": []}


@needs_cv2
def test_cli_predict_video_with_annotation(tiny, tmp_path):
    import cv2
    from click.testing import CliRunner

    from edgefer.cli import main

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    face, _ = cartoon_face(150)
    for i in range(6):  # a face in every other frame
        writer.write(face if i % 2 == 0 else np.full((240, 320, 3), 40 * i, np.uint8))
    writer.release()
    annotated = tmp_path / "out.mp4"
    result = CliRunner().invoke(main, ["predict", str(video), "-m", str(tiny.onnx), "--max-frames", "4",
                                       "--annotate", str(annotated), "--no-detect"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r["frame"] for r in rows] == [0, 1, 2, 3] and all(r["label"] in FER2013_LABELS for r in rows)
    capture = cv2.VideoCapture(str(annotated))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left
    boxed = tmp_path / "boxed.avi"
    detected = CliRunner().invoke(main, ["predict", str(video), "-m", str(tiny.onnx), "--annotate", str(boxed)])
    assert detected.exit_code == 0, detected.output
    rows = [json.loads(line) for line in detected.output.splitlines() if line.startswith("{")]
    assert [len(r["faces"]) for r in rows] == [1, 0, 1, 0, 1, 0]
    assert rows[0]["faces"][0]["label"] in FER2013_LABELS and len(rows[0]["faces"][0]["box"]) == 4
    ok, first = cv2.VideoCapture(str(boxed)).read()
    assert ok and first.shape == (240, 320, 3) and (np.abs(first.astype(int) - face).max(axis=-1) > 100).any()


def test_cli_predict_errors(tiny, tmp_path):
    from click.testing import CliRunner

    from edgefer.cli import main

    result = CliRunner().invoke(main, ["predict", str(tmp_path / "nope.png"), "-m", str(tiny.onnx)])
    assert result.exit_code == 2 and "nope.png: no such image, folder, video file or camera index" in result.output
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    result = CliRunner().invoke(main, ["predict", str(image), "-m", str(tiny.onnx), "--annotate", "o.mp4"])
    assert result.exit_code == 2 and "--annotate needs a video file or camera source" in result.output
    result = CliRunner().invoke(main, ["predict", str(image), "-m", str(tmp_path / "m.pt")])
    assert result.exit_code == 2 and "cannot tell the backend from the suffix '.pt'" in result.output


def _docs_example(doc: str) -> str:
    text = (Path(__file__).parents[1] / doc).read_text(encoding="utf-8")
    section = text.split("## Use in your app", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@needs_cv2
@pytest.mark.parametrize("doc", ["docs/runtime.md"])  # README.md: tests/test_readme.py
def test_docs_example_runs_as_written(doc, tiny, images, tmp_path, monkeypatch, capsys):
    import cv2

    code = _docs_example(doc)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    shutil.copy(tiny.onnx, tmp_path / "fer.onnx")
    cv2.imwrite(str(tmp_path / "face.png"), images[0])
    cv2.imwrite(str(tmp_path / "photo.jpg"), cartoon_face(150)[0])
    monkeypatch.chdir(tmp_path)
    exec(compile(code, doc, "exec"), {"__name__": "__docs__"})
    printed = capsys.readouterr().out.splitlines()
    expected = EmotionRecognizer.open(tiny.onnx).predict(images[0], color="gray")
    assert printed[0].startswith(f"{expected.labels[0]} [('{expected.labels[0]}', ")
    assert len(printed) == 2 and printed[1].split(")")[1].split()[0] in FER2013_LABELS  # one face found in the photo


def test_float16_io_model(tmp_path):
    """A model whose input and output are float16 (an FP16 export without keep_io_types) still takes the
    float32 batch from prepare and returns float32 logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgefer.preprocess import prepare
    from edgefer.spec import ModelSpec, embed_in_onnx

    spec = ModelSpec(input_size=8)
    weights = np.random.default_rng(3).normal(size=(64, 7)).astype(np.float16)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "linear", [helper.make_tensor_value_info("input", TensorProto.FLOAT16, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT16, ["batch", 7])],
        [numpy_helper.from_array(weights, "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    embed_in_onnx(proto, spec)
    onnx.save(proto, str(tmp_path / "half.onnx"))
    images = np.random.default_rng(4).integers(0, 256, (3, 20, 20), dtype=np.uint8)
    pred = EmotionRecognizer.open(tmp_path / "half.onnx").predict(images[..., None], color="gray", return_logits=True)
    ref = prepare(images, spec, color="gray").astype(np.float16).reshape(3, -1).astype(np.float32) @ weights
    assert pred.logits.dtype == np.float32 and np.allclose(pred.logits, ref, rtol=1e-2, atol=5e-2)
