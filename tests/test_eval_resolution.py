"""Models are scored at their own input size and colour: a folder of 96x96 colour face crops, a 200 px RGB and a
64 px gray ONNX model (built here) that read fine detail. Bench's FP32 accuracy must equal the same model run
directly in ONNX Runtime on the same files prepared at its own size (Pillow: area-averaged when shrinking,
bilinear when enlarging); the 48 px gray detour would change the answers (checked here too, so the test could
fail)."""

import json

import numpy as np
import pytest
from PIL import Image

from edgefer.data import load
from tests.backends import needs_onnxruntime, needs_torch

CLASSES = ("angry", "happy", "sad")  # one horizontal band of the face each
CROP = 96
PER_CLASS = 24


def _face(rng, label: int) -> np.ndarray:
    """A 96x96 RGB face-like crop: smooth skin-toned oval with soft eyes and mouth on a background, mild noise,
    and a 1-pixel checker texture (fine detail: gone after an area-averaged 2x shrink) in band ``label``, with a
    weaker one in another band in some images (so the model is not always right)."""
    yy, xx = np.mgrid[0:CROP, 0:CROP].astype(np.float32)
    cy, cx = CROP / 2 + rng.normal(0, 2), CROP / 2 + rng.normal(0, 2)
    oval = np.clip(1.4 - np.hypot((yy - cy) / 40, (xx - cx) / 32), 0, 1)
    shade = 90 + 70 * oval + 10 * (xx / CROP)
    for ey, ex, depth in ((cy - 10, cx - 12, 40), (cy - 10, cx + 12, 40), (cy + 18, cx, 30)):
        shade -= depth * np.exp(-((yy - ey) ** 2 + (xx - ex) ** 2) / 40)
    checker = np.where((yy.astype(int) + xx.astype(int)) % 2 == 0, 1.0, -1.0)
    texture = np.zeros_like(shade)
    band = CROP // len(CLASSES)
    texture[label * band : (label + 1) * band] = rng.uniform(10, 25)
    if rng.random() < 0.4:
        other = (label + rng.integers(1, len(CLASSES))) % len(CLASSES)
        texture[other * band : (other + 1) * band] = texture[label * band] * rng.uniform(0.6, 1.3)
    gray = shade + texture * checker + rng.normal(0, 1.5, shade.shape)
    tint = np.array([1.08, 0.95, 0.85], np.float32) * rng.uniform(0.95, 1.05, 3)
    return np.clip(gray[..., None] * tint, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    root = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(7)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(PER_CLASS):
            Image.fromarray(_face(rng, label)).save(root / name / f"{i:03d}.png")
    return root


def _fine_detail_model(path, size: int, channels: int):
    """Logits = the mean |Laplacian| of the input in each of three horizontal bands (one per class): a model
    that reads fine detail. The sidecar states its spec (no edgefer metadata)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    kernel = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32) / channels
    weights = np.repeat(kernel[None, None], channels, axis=1)  # (1, C, 3, 3): the channels summed
    inner = size - 2
    bands = np.zeros((inner, len(CLASSES)), np.float32)
    for k in range(len(CLASSES)):
        lo, hi = round(k * inner / len(CLASSES)), round((k + 1) * inner / len(CLASSES))
        bands[lo:hi, k] = 1.0 / (hi - lo)
    nodes = [helper.make_node("Conv", ["x", "w"], ["hp"]), helper.make_node("Abs", ["hp"], ["a"]),
             helper.make_node("ReduceMean", ["a"], ["rows"], axes=[3], keepdims=0),
             helper.make_node("MatMul", ["rows", "bands"], ["scores"]),
             helper.make_node("Flatten", ["scores"], ["logits"], axis=1)]
    graph = helper.make_graph(
        nodes, "fine_detail", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", len(CLASSES)])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bands, "bands")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    spec = {"labels": list(CLASSES), "input_size": size, "channels": channels, "mean": [0.5] * channels,
            "std": [0.5] * channels, "color_order": "rgb" if channels == 3 else "gray", "output": "logits"}
    path.with_name(path.name + ".json").write_text(json.dumps(spec))
    return path


def _direct_accuracy(model_path, root, size: int, channels: int, detour: bool = False) -> float:
    """ONNX Runtime on the files, prepared here with Pillow at the model's own size and colour (or, with
    ``detour``, through a 48 px gray copy first: what edgefer used to score)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    right = total = 0
    for label, name in enumerate(CLASSES):
        for file in sorted((root / name).iterdir()):
            with Image.open(file) as image:
                image = image.convert("L" if channels == 1 or detour else "RGB")
                if detour:
                    image = image.resize((48, 48), Image.Resampling.BOX)
                    image = image.resize((size, size), Image.Resampling.BILINEAR).convert(
                        "RGB" if channels == 3 else "L")
                else:
                    shrink = image.size[0] > size
                    image = image.resize((size, size), Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR)
                pixels = np.asarray(image, np.float32) / 255
            x = (pixels[None, None] if channels == 1 else pixels.transpose(2, 0, 1)[None]) - 0.5
            logits = session.run(None, {"x": (x / 0.5).astype(np.float32)})[0]
            right += int(logits.argmax() == label)
            total += 1
    return right / total


@needs_onnxruntime
@pytest.mark.parametrize(("size", "channels"), [(200, 3), (64, 1)], ids=["200px-rgb", "64px-gray"])
def test_bench_scores_a_model_at_its_own_size_and_colour(crops, tmp_path, size, channels):
    from edgefer.bench import run_bench

    model = _fine_detail_model(tmp_path / f"m{size}.onnx", size, channels)
    direct = _direct_accuracy(model, crops, size, channels)
    detour = _direct_accuracy(model, crops, size, channels, detour=True)
    assert direct > 0.7 and abs(direct - detour) > 0.2, (direct, detour)  # fine detail decides: a detour shows
    report = run_bench(model, crops, out_dir=tmp_path / "bench", targets="onnxruntime-fp32", iters=1, warmup=0,
                       batches=(1,), threads=1, plots=False)
    row = next(r for r in report["rows"] if r["key"] == "onnxruntime-fp32")
    assert row["status"] == "ok", row["reason"]
    assert abs(row["accuracy"]["accuracy"] - direct) <= 0.01, (row["accuracy"]["accuracy"], direct, detour)


def test_folder_keeps_originals_and_faces_follow_the_model(crops, tmp_path):
    """The 48 px gray copy is FER2013's form (training, statistics); ``faces`` reads the originals at any size and
    colour with the stated rule; FER2013-form files (48x48 gray) keep no original."""
    dataset = load(crops)["train"]
    assert dataset.originals is not None and len(dataset.originals) == len(dataset)
    first = dataset.originals[0]
    with Image.open(first) as image:
        rgb = np.asarray(image.convert("RGB").resize((200, 200), Image.Resampling.BILINEAR))
        gray = np.asarray(image.convert("L").resize((64, 64), Image.Resampling.BOX))
    np.testing.assert_array_equal(dataset.faces([0], 200, gray=False)[0], rgb)
    np.testing.assert_array_equal(dataset.faces([0], 64)[0], gray)
    assert dataset.subset([0, 1]).originals.tolist() == dataset.originals[:2].tolist()
    fer = tmp_path / "fer" / "happy"
    fer.mkdir(parents=True)
    Image.fromarray(np.full((48, 48), 100, np.uint8)).save(fer / "a.png")
    assert load(tmp_path / "fer")["train"].originals is None  # FER2013's own form: nothing more to read


def test_a_removed_original_is_one_clear_error(crops, tmp_path):
    import shutil

    from edgefer.errors import DataError

    copy = tmp_path / "copy"
    shutil.copytree(crops, copy)
    dataset = load(copy)["train"]
    gone = dataset.originals[0]
    __import__("os").remove(gone)
    with pytest.raises(DataError, match="cannot read the image again"):
        dataset.faces([0], 64)


@needs_torch
@needs_onnxruntime
def test_eval_scores_a_checkpoint_model_at_its_own_size(crops, tmp_path):
    """``edgefer eval``'s scoring (``evaluate_dataset``) gives a 64 px model faces read from the originals at 64 px:
    the accuracy of the same computation run directly in ONNX Runtime on the files."""
    import torch

    from edgefer.spec import FER2013_LABELS, ModelSpec
    from edgefer.train.evaluation import evaluate_dataset

    size, inner = 64, 62
    columns = [FER2013_LABELS.index(name) for name in CLASSES]
    bands = torch.zeros(inner, len(FER2013_LABELS))
    for k, column in enumerate(columns):
        lo, hi = round(k * inner / len(CLASSES)), round((k + 1) * inner / len(CLASSES))
        bands[lo:hi, column] = 1.0 / (hi - lo)

    class FineDetail(torch.nn.Module):  # _fine_detail_model's graph over FER2013's seven classes
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3, bias=False)
            self.conv.weight.data[:] = torch.tensor([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=torch.float32)

        def forward(self, x):
            assert x.shape[-2:] == (size, size)
            return self.conv(x).abs().mean(dim=3)[:, 0] @ bands

    spec = ModelSpec(labels=FER2013_LABELS, input_size=size, channels=1, mean=(0.5,), std=(0.5,))
    report = evaluate_dataset(FineDetail().eval(), load(crops)["train"], spec, batch_size=16)
    direct = _direct_accuracy(_fine_detail_model(tmp_path / "m.onnx", size, 1), crops, size, 1)
    assert abs(report["accuracy"] - direct) <= 0.01, (report["accuracy"], direct)
