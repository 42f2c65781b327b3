"""The accuracy-gated INT8 search (edgefer.export.gate) on a briefly trained tiny model (timm test_efficientnet,
32 px, `edgefer train` on SYNTHETIC data): a reachable bound picks a passing recipe that really scores what
export.json says; an impossible bound with a damaged calibration set fails with one clear line, exit 2, the
attempts report left in the output folder; Stage B keeps the top-ranked layers in floating point."""

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from edgefer.cli import main
from edgefer.errors import ExportError
from edgefer.export import check, export, gate
from edgefer.export.calibration import CalibrationWarning, draw, from_data
from tests.backends import needs_nncf, needs_onnxruntime, needs_openvino, needs_torch

pytestmark = [needs_torch, needs_onnxruntime]
CALIB = ["--calib-size", "128", "--calib-floor", "8"]


@pytest.fixture(scope="module")
def checkpoint(fer_csv, tmp_path_factory):
    """test_efficientnet trained for 3 short epochs by the real `edgefer train` CLI (~15 s on 1 thread)."""
    run = tmp_path_factory.mktemp("gate") / "run"
    result = CliRunner().invoke(main, [
        "train", "--data", str(fer_csv), "--out", str(run), "--arch", "test_efficientnet", "--img-size", "32",
        "--batch-size", "32", "--threads", "1", "--seed", "0", "--epochs", "3", "--lr", "3e-3",
        "--drop-rate", "0", "--drop-path-rate", "0", "--warmup-epochs", "0.5"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return run


@pytest.fixture(scope="module")
def damaged_calib(fer_csv, tmp_path_factory):
    """A calibration bundle whose images are all mid-grey: every activation range is calibrated on nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        real = from_data(fer_csv, 128, floor=8)
        grey = SimpleNamespace(images=np.full_like(real.images, 128), labels=real.labels, ids=real.ids,
                               source="grey", name="train")
        return draw(grey, len(real), "random", 0).save(tmp_path_factory.mktemp("grey"))


@pytest.fixture(scope="module")
def gated(checkpoint, fer_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("gated")
    result = CliRunner().invoke(main, [
        "export", "--model", str(checkpoint), "--target", "tensorrt", "--int8", "--data", str(fer_csv), *CALIB,
        "--max-drop", "0.05", "--min-agreement", "0.6", "--gate-budget", "6", "--exporter", "legacy", "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, json.loads((out / "export.json").read_text()), result.output


def test_reachable_bound_picks_a_passing_recipe(gated, fer_csv):
    out, result, output = gated
    search = result["int8_search"]
    attempts = search["attempts"]
    assert search["max_drop"] == 0.05 and "0.005 = 0.5 percentage points" in search["drop_units"]
    assert search["min_agreement"] == 0.6
    assert [a["recipe"]["method"] for a in attempts if a["stage"] == "A"] == list(gate.CALIB_METHODS)
    for a in attempts:
        assert a["passed"] == (a["macro_f1_drop"] <= 0.05 and a["top1_agreement"] >= 0.6)
        assert abs(a["macro_f1_drop"] - (search["reference"]["macro_f1"] - a["macro_f1"])) < 1e-12
        assert a["latency_ms"] > 0 and 0 <= a["top1_agreement"] <= 1 and set(a["per_class_f1"]) >= {"disgust", "fear"}
    chosen = attempts[search["chosen"]]
    assert search["passed"] and chosen["passed"]
    # tensorrt: the most INT8 passing attempt (CPU latency of a TensorRT Q/DQ graph is no TensorRT proxy)
    assert chosen == gate._choose(attempts, by_latency=False) and search["selection"] == gate.SELECTION_BY_STRUCTURE
    assert chosen["excluded_count"] == min(a["excluded_count"] for a in attempts if a["passed"])
    assert chosen["macro_f1"] == max(a["macro_f1"] for a in attempts if a["passed"]
                                     and a["excluded_count"] == chosen["excluded_count"])
    # the published file is the chosen attempt: re-evaluating it independently gives the recorded macro-F1
    from edgefer.data import prepare_splits
    from edgefer.spec import ModelSpec

    val = prepare_splits(fer_csv).val
    report = check.evaluate(out / "model.int8.qdq.onnx", val.images, val.labels, ModelSpec.from_dict(result["spec"]))
    assert report["macro_f1"] == pytest.approx(chosen["macro_f1"], abs=1e-9)
    assert result["checks"]["exported"]["macro_f1"] == pytest.approx(chosen["macro_f1"], abs=1e-9)
    assert result["quantization"] == {"int8_search_attempt": chosen["index"], **chosen["recipe"],
                                      "excluded_nodes": chosen["excluded"]}
    assert f"chose attempt #{chosen['index']} of {len(attempts)}" in output
    assert not (out / "int8_search.json").exists()


def test_impossible_bound_fails_clearly_and_leaves_the_report(checkpoint, fer_csv, damaged_calib, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "export", "--model", str(checkpoint), "--target", "tensorrt", "--int8", "--data", str(fer_csv),
        "--calib", str(damaged_calib), "--max-drop", "0", "--gate-budget", "7", "--exporter", "legacy",
        "--out", str(out)])
    assert result.exit_code == 2, result.output + repr(result.exception)
    line = next(x for x in result.output.splitlines() if x.startswith("edgefer: error:"))
    assert line.startswith("edgefer: error: INT8 gate: no recipe kept the macro-F1 drop within --max-drop 0 ")
    assert "after 7 attempt(s)" in line and "best attempt #" in line and str(out / "int8_search.json") in line
    report = json.loads((out / "int8_search.json").read_text())
    assert not report["passed"] and report["chosen"] is None and len(report["attempts"]) == 7
    assert all(a["macro_f1_drop"] > 0 for a in report["attempts"])
    best = min(report["attempts"], key=lambda a: (a["macro_f1_drop"], -a["top1_agreement"]))
    assert f"best attempt #{best['index']} " in line and f"drop {best['macro_f1_drop']:.4f}" in line
    # Stage B: the best Stage-A recipe with the top 1, 2, 4 ranked layers kept in floating point
    ranked = [layer["layer"] for layer in report["sensitivity"]["ranking"]]
    stage_b = [a for a in report["attempts"] if a["stage"] == "B"]
    assert [a["excluded_count"] for a in stage_b] == [1, 2, 4]
    assert all(a["excluded"] == ranked[: a["excluded_count"]] for a in stage_b)
    assert {a["recipe"]["method"] for a in stage_b} == {report["attempts"][report["sensitivity"]["base_attempt"]]
                                                        ["recipe"]["method"]}
    assert not (out / "export.json").exists() and not list(out.glob("*.onnx"))


def test_sensitivity_ranks_quantized_layers_by_added_error(checkpoint, fer_csv, tmp_path):
    """The ranking covers every node with a quantized input; the stem's input is the exact FP32 image (no error in),
    and an excluded layer really stays in floating point (no DequantizeLinear feeds it)."""
    import onnx

    from edgefer.export.qdq import quantize_qdq
    from edgefer.preprocess import prepare
    from edgefer.spec import ModelSpec

    fp32 = export(checkpoint, "onnx", "fp32", tmp_path, exporter="legacy")
    spec = ModelSpec.from_dict(fp32["spec"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        calib = from_data(fer_csv, 64, floor=4)
    quantizer = gate._QDQQuantizer(tmp_path / "model.onnx", calib, spec, (), batch_size=32, quantize_bias=False,
                                   subset_size=None)
    quantize_qdq(tmp_path / "model.onnx", calib, spec, tmp_path / "q.onnx", placement="all")  # every op ranked
    ranking = quantizer.sensitivity(tmp_path / "q.onnx", prepare(calib.images[:16], spec, color="gray"))
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    quantized = [n.name for n in graph.node if n.op_type not in gate.QDQ_OPS
                 and any(producers.get(t) == "DequantizeLinear" for t in n.input)]
    assert sorted(layer["layer"] for layer in ranking) == sorted(quantized)
    assert {"Conv", "Gemm", "Mul", "Sigmoid"} <= {layer["op"] for layer in ranking}
    weighted = [n.name for n in graph.node if n.op_type == "Conv"]
    assert [layer["added_error"] for layer in ranking] == sorted((layer["added_error"] for layer in ranking),
                                                                 reverse=True)
    stem = next(layer for layer in ranking if layer["layer"] == weighted[0])
    assert stem["error_in"] == 0 and stem["error_out"] > 0
    for layer in ranking:
        assert layer["added_error"] == pytest.approx(layer["error_out"] - layer["error_in"], abs=2e-6)

    top = ranking[0]["layer"]
    quantizer.quantize({"method": "moving-average"}, [top], tmp_path / "k.onnx")
    nodes = onnx.load(str(tmp_path / "k.onnx")).graph.node
    producers = {o: n.op_type for n in nodes for o in n.output}
    kept = next(n for n in nodes if n.name == top)
    assert not any(producers.get(t) == "DequantizeLinear" for t in kept.input)


def test_choose_prefers_speed_then_macro_f1_within_the_tie():
    def attempt(index, latency, f1, passed=True, excluded=0):
        return {"index": index, "latency_ms": latency, "macro_f1": f1, "passed": passed, "excluded_count": excluded}

    assert gate._choose([attempt(0, 1.0, 0.9, passed=False)]) is None
    assert gate._choose([attempt(0, 2.0, 0.9), attempt(1, 1.0, 0.5)])["index"] == 1  # clearly faster wins
    assert gate._choose([attempt(0, 1.05, 0.9), attempt(1, 1.0, 0.5)])["index"] == 0  # a tie: macro-F1 wins
    assert gate._choose([attempt(0, 1.0, 0.5, excluded=3), attempt(1, 1.0, 0.5)])["index"] == 1
    assert gate._choose([attempt(0, 0.5, 0.99, passed=False), attempt(1, 1.0, 0.5)])["index"] == 1
    by_structure = [attempt(0, 2.0, 0.5, excluded=0), attempt(1, 1.0, 0.9, excluded=4), attempt(2, 3.0, 0.6)]
    assert gate._choose(by_structure, by_latency=False)["index"] == 2  # fewest FP32 layers, then macro-F1
    assert list(gate._doubling(13)) == [1, 2, 4, 8, 13] and list(gate._doubling(4)) == [1, 2, 4]


@pytest.mark.parametrize("args, message", [
    (["--max-drop", "0.01"], "--max-drop only applies to --int8"),
    (["--int8", "--max-drop", "1.5"], "--max-drop 1.5 is outside [0, 1): it is an absolute macro-F1 difference"),
    (["--int8", "--max-drop", "0.01", "--gate-budget", "0"], "--gate-budget must be >= 1"),
    (["--int8", "--min-agreement", "0.99"], "--min-agreement is a bound of the INT8 accuracy gate: add --max-drop"),
    (["--int8", "--max-drop", "0.01", "--min-agreement", "99.5"], "--min-agreement 99.5 is outside [0, 1]"),
])
def test_option_errors_are_one_line_exit_2(args, message, checkpoint, fer_csv, tmp_path):
    result = CliRunner().invoke(main, ["export", "--model", str(checkpoint), "--target", "tensorrt", "--data",
                                       str(fer_csv), "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_max_drop_needs_labelled_validation_data(checkpoint, damaged_calib, tmp_path):
    with pytest.raises(ExportError, match="--max-drop needs labelled validation images: add --data"):
        export(checkpoint, "tensorrt", "int8", tmp_path, calib=damaged_calib, max_drop=0.01)


@needs_openvino
@needs_nncf
def test_openvino_gate_searches_nncf_presets(checkpoint, fer_csv, tmp_path):
    result = export(checkpoint, "openvino", "int8", tmp_path, data=fer_csv, calib_size=128, calib_floor=4,
                    exporter="legacy", max_drop=0.05, gate_budget=2)
    search = result["int8_search"]
    assert [a["recipe"] for a in search["attempts"]] == list(gate.OPENVINO_RECIPES[:2])
    assert search["quantizer"] == "nncf" and search["passed"]
    assert (tmp_path / "model.int8.xml").is_file() and (tmp_path / "model.int8.bin").is_file()
    chosen = search["attempts"][search["chosen"]]
    assert result["checks"]["exported"]["macro_f1"] == pytest.approx(chosen["macro_f1"], abs=1e-9)
    # the OpenVINO ranking names ops of the IR fed by a FakeQuantize, the stem with an exact input
    from edgefer.export.calibration import CalibrationSet
    from edgefer.preprocess import prepare
    from edgefer.spec import ModelSpec

    spec = ModelSpec.from_dict(result["spec"])
    calib = CalibrationSet.load(tmp_path / "calibration")
    quantizer = gate._OpenVINOQuantizer(tmp_path / "model.onnx", calib, spec, (), batch_size=1,
                                        quantize_bias=False, subset_size=None)
    ranking = quantizer.sensitivity(tmp_path / "model.int8.xml", prepare(calib.images[:8], spec, color="gray"))
    ops = {layer["op"] for layer in ranking}
    assert "Convolution" in ops and len(ops) > 1 and "FakeQuantize" not in ops
    assert min(layer["error_in"] for layer in ranking) == 0


@needs_openvino
@needs_nncf
def test_openvino_accuracy_control_attempt_reports_its_fp32_layers(checkpoint, fer_csv, damaged_calib, tmp_path):
    """NNCF's quantize_with_accuracy_control (the OpenVINO fallback before the gate's own ranking) on a damaged
    calibration set with bound 0: it reverts layers, and the attempt lists exactly the ops left unquantized."""
    from edgefer.data import prepare_splits
    from edgefer.export.calibration import CalibrationSet
    from edgefer.export.openvino import read_model
    from edgefer.spec import ModelSpec

    result = export(checkpoint, "onnx", "fp32", tmp_path, exporter="legacy")
    spec = ModelSpec.from_dict(result["spec"])
    val = prepare_splits(fer_csv).val
    quantizer = gate._OpenVINOQuantizer(tmp_path / "model.onnx", CalibrationSet.load(damaged_calib), spec, (),
                                        batch_size=1, quantize_bias=False, subset_size=64,
                                        validation=(val.images, val.labels, 0.0, 4))
    [recipe] = quantizer.fallback_recipes({"preset": "performance", "fast_bias_correction": True})
    assert recipe == {"preset": "performance", "fast_bias_correction": True, "accuracy_control": True}
    info = quantizer.quantize(recipe, [], tmp_path / "ac.xml")
    assert info["quantizer"] == "nncf.quantize_with_accuracy_control" and info["max_drop"] == 0.0
    assert info["fp32_layers"]  # one revert can un-quantize several ops (a shared quantizer), so no upper bound
    assert info["fp32_layers"] == gate._unquantized_ops(read_model(tmp_path / "ac.xml"))
