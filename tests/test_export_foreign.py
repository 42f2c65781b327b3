"""Models as other tools make them, built from edgefer's own tiny model (timm test_efficientnet, 32 px): an NHWC
input (ONNX Transpose wrapper), permuted labels spelled differently, a softmax output, fixed batch 1 and 4. Each
exports to every target and scores exactly what the unmodified model scores (FP32/FP16; INT8 within a small
tolerance) through the export checks and through bench; labels are matched by name, never by position."""

import json
import warnings

import numpy as np
import pytest

from edgefer.export import ExportConfig
from edgefer.export import export as run_export
from tests.backends import needs_nncf, needs_onnxruntime, needs_openvino, needs_torch

pytestmark = [needs_torch, needs_onnxruntime, needs_openvino, needs_nncf]
PERMUTATION = [6, 2, 0, 5, 3, 1, 4]
SPELLED = {"angry": "Anger", "disgust": "disgusted", "fear": "fearful", "happy": "happiness", "sad": "sadness",
           "surprise": "surprised", "neutral": "Neutral"}
# (target, precision) -> options; every target, INT8 on both quantizers (Q/DQ with min/max calibration: the
# moving-average method averages per-batch ranges, so a fixed batch of 1 would calibrate differently by design);
# OpenVINO FP32 IR runs in bench below
EXPORTS = {("onnx", "int8"): {"quantizer": "ort", "calib_method": "minmax"}, ("openvino", "int8"): {},
           ("tensorrt", "fp16"): {}}


def _variant(base_onnx, spec, kind: str, folder):
    """The base ONNX rewritten as another tool would ship it, with the spec that describes it embedded."""
    import onnx
    from onnx import helper

    from edgefer.spec import METADATA_KEY, embed_in_onnx

    proto = onnx.load(str(base_onnx))
    del proto.metadata_props[:]
    graph = proto.graph
    size = spec.input_size
    if kind == "nhwc":
        old = graph.input[0]
        new = helper.make_tensor_value_info("image_nhwc", onnx.TensorProto.FLOAT, ["N", size, size, 1])
        graph.node.insert(0, helper.make_node("Transpose", ["image_nhwc"], [old.name], perm=[0, 3, 1, 2]))
        graph.input.remove(old)
        graph.input.insert(0, new)
        spec = spec.replace(layout="nhwc")
    elif kind in ("permuted", "softmax"):
        out = graph.output[0]
        name = out.name + "_raw"
        for node in graph.node:
            node.output[:] = [name if o == out.name else o for o in node.output]
        if kind == "permuted":
            graph.initializer.append(onnx.numpy_helper.from_array(np.array(PERMUTATION, np.int64), "perm"))
            graph.node.append(helper.make_node("Gather", [name, "perm"], [out.name], axis=1))
            spec = spec.replace(labels=tuple(SPELLED[spec.labels[i]] for i in PERMUTATION))
        else:
            graph.node.append(helper.make_node("Softmax", [name], [out.name], axis=1))
            spec = spec.replace(output="probabilities")
    elif kind.startswith("batch"):
        n = int(kind[5:])
        for value in (graph.input[0], graph.output[0]):
            value.type.tensor_type.shape.dim[0].Clear()
            value.type.tensor_type.shape.dim[0].dim_value = n
    assert METADATA_KEY not in {p.key for p in proto.metadata_props}
    embed_in_onnx(proto, spec)
    path = folder / f"{kind}.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def models(fer_csv, tmp_path_factory):
    from tests.runtime_models import export_tiny

    folder = tmp_path_factory.mktemp("foreign")
    tiny = export_tiny(folder)
    kinds = ("nhwc", "permuted", "softmax", "batch1", "batch4")
    return tiny, {"base": tiny.onnx, **{k: _variant(tiny.onnx, tiny.spec, k, folder) for k in kinds}}


@pytest.fixture(scope="module")
def exported(models, fer_csv, tmp_path_factory):
    """Every model exported to every (target, precision) in EXPORTS: {(model, target, precision): export.json}."""
    tiny, paths = models
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, path in paths.items():
            for (target, precision), options in EXPORTS.items():
                config = ExportConfig.build(target, precision, calib_size=64, calib_floor=4, **options)
                folder = tmp_path_factory.mktemp(f"{name}-{target}-{precision}")
                out[(name, target, precision)] = run_export(path, config, folder, data=fer_csv).to_json()
    return out


@pytest.mark.parametrize("name", ["nhwc", "permuted", "softmax", "batch1", "batch4"])
def test_every_target_scores_what_the_unmodified_model_scores(exported, name):
    for target, precision in EXPORTS:
        base, other = exported[("base", target, precision)], exported[(name, target, precision)]
        for key in ("accuracy", "macro_f1"):
            assert other["checks"]["reference"][key] == base["checks"]["reference"][key], (target, precision, key)
            tolerance = 0.05 if precision == "int8" else 0.0
            assert other["checks"]["exported"][key] == pytest.approx(base["checks"]["exported"][key], abs=tolerance), \
                (target, precision, key)
        if precision != "int8":
            assert other["checks"]["exported"]["top1_agreement"] == 1.0
    if name == "permuted":
        labels = exported[(name, "openvino", "int8")]["checks"]["labels"]
        assert labels["matched_by"] == "name" and labels["data_only"] == labels["model_only"] == []
    if name.startswith("batch"):
        assert exported[(name, "onnx", "int8")]["spec"]["batch"] == int(name[5:])
    if name == "nhwc":
        assert exported[(name, "openvino", "int8")]["spec"]["layout"] == "nhwc"


def test_bench_scores_permuted_and_nhwc_models_like_the_original(models, fer_csv, tmp_path):
    from edgefer.bench import run_bench

    tiny, paths = models
    reports = {}
    for name in ("base", "permuted", "nhwc"):
        reports[name] = run_bench(paths[name], fer_csv, out_dir=tmp_path / name, targets="onnx,openvino-fp32",
                                  iters=2, warmup=0, batches=(1,), plots=False)
        rows = {r["key"]: r for r in reports[name]["rows"]}
        assert rows["onnxruntime-fp32"]["status"] == "ok" and rows["openvino-fp32"]["status"] == "ok", rows
    for name in ("permuted", "nhwc"):
        for key in ("onnxruntime-fp32", "openvino-fp32"):
            base = next(r for r in reports["base"]["rows"] if r["key"] == key)["accuracy"]
            other = next(r for r in reports[name]["rows"] if r["key"] == key)["accuracy"]
            assert other == base, (name, key)
    saved = json.loads((tmp_path / "permuted" / "bench.json").read_text())
    assert saved["data"]["labels"]["shared"] == list(tiny.spec.labels)
    assert saved["data"]["images_used"]["evaluated"] == "test split of --data"


def _folder(root, layout: str, n: int = 90):
    """Labelled faces as users keep them: class folders only ("classes") or test/<class>/ only ("test-only"),
    class folders spelled the way other data sets do."""
    Image = pytest.importorskip("PIL.Image", reason="Pillow (edgefer[data]) reads image folders")
    from edgefer.data import synthesize
    from edgefer.spec import FER2013_LABELS

    faces = synthesize(n, seed=3)
    base = root / "test" if layout == "test-only" else root
    for i, (image, label) in enumerate(zip(faces.images, faces.labels)):
        folder = base / SPELLED[FER2013_LABELS[int(label)]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return root


@pytest.mark.parametrize("layout", ["classes", "test-only"])
def test_bench_on_a_plain_folder_evaluates_it_whole_and_carves_calibration(models, layout, tmp_path):
    from edgefer.bench import run_bench

    tiny, paths = models
    data = _folder(tmp_path / "faces", layout)
    report = run_bench(paths["base"], data, out_dir=tmp_path / "bench", targets="onnx,ort-trt-int8", iters=2,
                       warmup=0, batches=(1,), plots=False, export_options={"calib_size": 20})
    rows = {r["key"]: r for r in report["rows"]}
    assert rows["onnxruntime-fp32"]["status"] == "ok" and rows["ort-trt-int8"]["status"] == "ok", rows
    used = report["data"]["images_used"]
    assert report["data"]["split"] == ("all" if layout == "classes" else "test") and used["evaluated_n"] == report["data"]["n"] == 90 - 20
    assert used["calibration"].startswith("20 images carved from the evaluated data (stratified, seed 0), "
                                          "disjoint from the 70 evaluated images")
    assert len(set(used["calibration_ids"])) == 20
    assert rows["onnxruntime-fp32"]["accuracy"]["n"] == 70
    markdown = (tmp_path / "bench" / "bench.md").read_text()
    assert "- INT8 calibration: 20 images carved from the evaluated data" in markdown


def test_export_on_a_test_only_folder_checks_on_it_and_calibrates_on_a_disjoint_part(models, tmp_path):
    from click.testing import CliRunner

    from edgefer.cli import main

    tiny, paths = models
    data = _folder(tmp_path / "faces", "test-only")
    out = tmp_path / "trt"
    result = CliRunner().invoke(main, ["export", "--model", str(paths["permuted"]), "--target", "tensorrt", "--int8",
                                       "--data", str(data), "--calib-size", "30", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "export.json").read_text())
    assert saved["checks"]["set"] == "all" and saved["checks"]["n"] == 60
    assert saved["calibration"]["size"] == 30 and saved["calibration"]["carved_from"]["n"] == 90
    assert saved["checks"]["labels"]["shared"] == list(tiny.spec.labels)
    other = tmp_path / "calib-data"
    result = CliRunner().invoke(main, ["export", "--model", str(paths["base"]), "--target", "openvino", "--int8",
                                       "--calib-data", str(_folder(other, "classes")), "--calib-size", "16",
                                       "--out", str(tmp_path / "ov")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "ov" / "export.json").read_text())
    assert saved["calibration"]["size"] == 16 and saved["calibration"]["split"] == "all"
    assert saved["checks"]["set"] == "calibration"
    assert "Statistics collection" not in result.output  # NNCF's progress bars stay off without --verbose
