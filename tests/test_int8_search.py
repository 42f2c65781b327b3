"""The accuracy-bounded INT8 search (edgefer.export.search) on a briefly trained tiny model (timm test_efficientnet,
32 px, `edgefer train` on SYNTHETIC data): a reachable bound picks a passing recipe that really scores what
export.json says; an impossible bound with a damaged calibration set fails with one clear line, exit 2, the
attempts report left in the output folder; Stage B keeps the top-ranked layers in floating point."""

import importlib.util
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from edgefer.cli import main
from edgefer.errors import ExportError
from edgefer.export import ExportConfig, check
from edgefer.export import export as run_export
from edgefer.export.calibration import CalibrationWarning, draw, from_data
from edgefer.export.config import CALIB_METHODS, QuantOptions
from edgefer.export.quantizers.macs import CONV_OP_TYPES
from edgefer.export.quantizers.nncf import RECIPES as NNCF_RECIPES
from edgefer.export.quantizers.nncf import NncfQuantizer, _unquantized_ops
from edgefer.export.quantizers.qdq import PLACEMENTS, QDQ_OPS, QdqQuantizer
from edgefer.export.search import Attempt, choose
from edgefer.export.search.loop import _doubling
from edgefer.export.search.selection import SELECTION_BY_STRUCTURE, describe_kept
from tests.backends import needs_nncf, needs_onnxruntime, needs_openvino, needs_torch


def export(source, target, precision, out, *, data=None, calib=None, **options) -> dict:
    return run_export(source, ExportConfig.build(target, precision, **options), out, data=data, calib=calib).to_json()


pytestmark = [needs_torch, needs_onnxruntime]
CALIB = ["--calib-size", "128", "--calib-floor", "8"]


@pytest.fixture(scope="module")
def checkpoint(fer_csv, tmp_path_factory):
    """test_efficientnet trained for 3 short epochs by the real `edgefer train` CLI (~15 s on 1 thread)."""
    run = tmp_path_factory.mktemp("search") / "run"
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
def searched(checkpoint, fer_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("searched")
    stale = out.with_name(out.name + ".int8_search.json")  # an earlier failed search's report beside --out
    stale.write_text("{}")
    result = CliRunner().invoke(main, [
        "export", "--model", str(checkpoint), "--target", "tensorrt", "--int8", "--data", str(fer_csv), *CALIB,
        "--max-drop", "0.05", "--min-agreement", "0.6", "--search-attempts", "6", "--exporter", "legacy", "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert not stale.exists()  # removed: it described a failure, not this export
    return out, json.loads((out / "export.json").read_text()), result.output


def _attempt(entry: dict) -> Attempt:
    fields = {k: v for k, v in entry.items() if k not in ("excluded_count", "passed")}
    return Attempt(**fields)


def test_reachable_bound_picks_a_passing_recipe(searched, fer_csv):
    out, result, output = searched
    search = result["int8_search"]
    attempts = search["attempts"]
    assert search["max_drop"] == 0.05 and "0.005 = 0.5 percentage points" in search["drop_units"]
    assert search["min_agreement"] == 0.6
    assert [a["recipe"]["method"] for a in attempts if a["stage"] == "A"] == list(CALIB_METHODS)
    for a in attempts:
        assert a["passed"] == (a["macro_f1_drop"] <= 0.05 and a["top1_agreement"] >= 0.6)
        assert abs(a["macro_f1_drop"] - (search["reference"]["macro_f1"] - a["macro_f1"])) < 1e-12
        assert a["latency_ms"] > 0 and 0 <= a["top1_agreement"] <= 1 and set(a["per_class_f1"]) >= {"disgust", "fear"}
    chosen = attempts[search["chosen"]]
    assert search["passed"] and chosen["passed"]
    # tensorrt: the most INT8 passing attempt (CPU latency of a TensorRT Q/DQ graph is no TensorRT proxy)
    assert chosen["index"] == choose([_attempt(a) for a in attempts], by_latency=False).index and search["selection"] == SELECTION_BY_STRUCTURE
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
    # every attempt reports the share of convolution MACs in INT8; the CLI prints the chosen one's
    assert all(0 <= a["conv_macs_int8"] <= 1 and 0 < a["conv_macs"]["int8"] <= a["conv_macs"]["total"]
               for a in attempts)
    assert all(a["conv_macs_int8"] == 1.0 and a["kept_in_float"] == [] for a in attempts if a["stage"] == "A")
    assert search["conv_macs_int8"] == chosen["conv_macs_int8"]
    assert f"conv MACs in INT8: {100 * chosen['conv_macs_int8']:.1f} %" in output
    assert describe_kept(chosen) in output
    assert not (out / "int8_search.json").exists()


def test_impossible_bound_fails_clearly_and_leaves_the_report(checkpoint, fer_csv, damaged_calib, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "export", "--model", str(checkpoint), "--target", "tensorrt", "--int8", "--data", str(fer_csv),
        "--calib", str(damaged_calib), "--max-drop", "0", "--search-attempts", "7", "--exporter", "legacy",
        "--search-qat-epochs", "0",  # PTQ only: a QAT attempt can reach 100 % agreement on this tiny model
        "--out", str(out)])
    assert result.exit_code == 2, result.output + repr(result.exception)
    line = next(x for x in result.output.splitlines() if x.startswith("edgefer: error:"))
    assert line.startswith("edgefer: error: INT8 search: no recipe kept the macro-F1 drop within --max-drop 0 ")
    failure_report = tmp_path / "out.int8_search.json"  # beside --out: never mistaken for part of an export
    assert "after 7 attempt(s)" in line and "best attempt #" in line and str(failure_report) in line
    assert not out.exists() and not (out / "int8_search.json").exists()
    report = json.loads(failure_report.read_text())
    assert not report["passed"] and report["chosen"] is None and len(report["attempts"]) == 7
    assert all(a["macro_f1_drop"] > 0 for a in report["attempts"])
    best = min(report["attempts"], key=lambda a: (a["macro_f1_drop"], -a["top1_agreement"]))
    assert f"best attempt #{best['index']} " in line and f"drop {best['macro_f1_drop']:.4f}" in line
    # Stage A: every calibration method (and the other Q/DQ placements with the best one)
    stage_a = [a for a in report["attempts"] if a["stage"] == "A"]
    assert len(stage_a) == len(CALIB_METHODS) + max(len(PLACEMENTS) - 1, 0)
    # Stage B: the best Stage-A recipe with the top 1, 2, 4 ranked NON-convolution layers in floating point; every
    # convolution stays INT8 (the damaged set cannot pass, so the budget ends in Stage B or C)
    sensitivity = report["sensitivity"]
    others = [layer["layer"] for layer in sensitivity["ranking"] if layer["op"] not in CONV_OP_TYPES]
    stage_b = [a for a in report["attempts"] if a["stage"] == "B"]
    assert [a["excluded_count"] for a in stage_b] == list(_doubling(sensitivity["non_conv_layers"]))[:7 - len(stage_a)]
    assert all(a["excluded"][:len(others)] == others[: a["excluded_count"]] for a in stage_b)
    assert all(a["conv_macs_int8"] == 1.0 for a in report["attempts"] if a["stage"] in "AB")
    assert all(k["op"] not in CONV_OP_TYPES and k["conv_macs"] is None for a in stage_b for k in a["kept_in_float"])
    base = report["attempts"][sensitivity["base_attempt"]]["recipe"]
    assert all(a["recipe"] == base for a in report["attempts"] if a["stage"] in "BC" and a["excluded_count"])
    for a in (a for a in report["attempts"] if a["stage"] == "C"):  # convolutions leave INT8 only after all others
        assert a["excluded_count"] > sensitivity["non_conv_layers"] and a["conv_macs_int8"] < 1.0
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
    quantizer = QdqQuantizer(tmp_path / "model.onnx", calib, spec, QuantOptions())
    every_op = {"placement": "all"} if "all" in PLACEMENTS else {}  # Q/DQ on SiLU and SE ops too
    quantize_qdq(tmp_path / "model.onnx", calib, spec, tmp_path / "q.onnx", **every_op)
    ranking = quantizer.sensitivity(tmp_path / "q.onnx", prepare(calib.images[:16], spec, color="gray"))
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    quantized = [n.name for n in graph.node if n.op_type not in QDQ_OPS
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
    quantizer.quantize({"method": "moving-average", **every_op}, [top], tmp_path / "k.onnx")
    nodes = onnx.load(str(tmp_path / "k.onnx")).graph.node
    producers = {o: n.op_type for n in nodes for o in n.output}
    kept = next(n for n in nodes if n.name == top)
    assert not any(producers.get(t) == "DequantizeLinear" for t in kept.input)


def test_choose_prefers_speed_then_macro_f1_within_the_tie():
    def attempt(index, latency, f1, passed=True, excluded=0):
        return Attempt(index, "A", {}, [f"n{i}" for i in range(excluded)], f1, f1, 0.0, 0.0, 0.0, 1.0,
                       0.0 if passed else 1.0, {}, latency, 0.0, 0.0)

    assert choose([attempt(0, 1.0, 0.9, passed=False)]) is None
    assert choose([attempt(0, 2.0, 0.9), attempt(1, 1.0, 0.5)]).index == 1  # clearly faster wins
    assert choose([attempt(0, 1.05, 0.9), attempt(1, 1.0, 0.5)]).index == 0  # a tie: macro-F1 wins
    assert choose([attempt(0, 1.0, 0.5, excluded=3), attempt(1, 1.0, 0.5)]).index == 1
    assert choose([attempt(0, 0.5, 0.99, passed=False), attempt(1, 1.0, 0.5)]).index == 1
    by_structure = [attempt(0, 2.0, 0.5, excluded=0), attempt(1, 1.0, 0.9, excluded=4), attempt(2, 3.0, 0.6)]
    assert choose(by_structure, by_latency=False).index == 2  # fewest FP32 layers, then macro-F1
    assert list(_doubling(13)) == [1, 2, 4, 8, 13] and list(_doubling(4)) == [1, 2, 4]


@pytest.mark.parametrize("args, message", [
    (["--max-drop", "0.01"], "--max-drop only applies to --int8"),
    (["--int8", "--max-drop", "1.5"], "--max-drop: must be a finite number in [0, 1) (an absolute macro-F1 difference"),
    (["--int8", "--max-drop", "0.01", "--search-attempts", "0"], "--search-attempts: must be an integer in [1, 10000], got 0"),
    (["--int8", "--min-agreement", "0.99"], "--min-agreement is a bound of the INT8 search: add --max-drop"),
    (["--int8", "--max-drop", "0.01", "--min-agreement", "99.5"], "--min-agreement: must be a finite number in [0, 1] (the fraction"),
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
def test_openvino_search_tries_nncf_presets(checkpoint, fer_csv, tmp_path):
    result = export(checkpoint, "openvino", "int8", tmp_path, data=fer_csv, calib_size=128, calib_floor=4,
                    exporter="legacy", max_drop=0.05, search_attempts=2)
    search = result["int8_search"]
    assert [a["recipe"] for a in search["attempts"]] == list(NNCF_RECIPES[:2])
    assert search["quantizer"] == "nncf" and search["passed"]
    assert (tmp_path / "model.int8.xml").is_file() and (tmp_path / "model.int8.bin").is_file()
    chosen = search["attempts"][search["chosen"]]
    assert result["checks"]["exported"]["macro_f1"] == pytest.approx(chosen["macro_f1"], abs=1e-9)
    # the IR's convolution MACs (OpenVINO shapes) add up to the FP32 ONNX graph's; what NNCF leaves in float by
    # its own rules (here the squeeze-excitation convolutions) is listed as kept in float
    import onnx

    from edgefer.export.quantizers.macs import onnx_layer_map

    fp32_total = onnx_layer_map(onnx.load(str(tmp_path / "model.onnx"))).share()["total"]
    for a in search["attempts"]:
        macs = a["conv_macs"]
        assert macs["total"] == fp32_total and a["conv_macs_int8"] == pytest.approx(macs["int8"] / fp32_total)
        assert 0.9 < a["conv_macs_int8"] <= 1 and a["excluded"] == []
        assert sum(k["conv_macs"] for k in a["kept_in_float"]) == fp32_total - macs["int8"]
        assert {k["op"] for k in a["kept_in_float"]} <= {"Convolution", "GroupConvolution", "MatMul"}
    # the OpenVINO ranking names ops of the IR fed by a FakeQuantize, the stem with an exact input
    from edgefer.export.calibration import CalibrationSet
    from edgefer.preprocess import prepare
    from edgefer.spec import ModelSpec

    spec = ModelSpec.from_dict(result["spec"])
    calib = CalibrationSet.load(tmp_path / "calibration")
    quantizer = NncfQuantizer(tmp_path / "model.onnx", calib, spec, QuantOptions())
    ranking = quantizer.sensitivity(tmp_path / "model.int8.xml", prepare(calib.images[:8], spec, color="gray"))
    ops = {layer["op"] for layer in ranking}
    assert "Convolution" in ops and len(ops) > 1 and "FakeQuantize" not in ops
    assert min(layer["error_in"] for layer in ranking) == 0


@needs_openvino
@needs_nncf
def test_openvino_accuracy_control_attempt_reports_its_fp32_layers(checkpoint, fer_csv, damaged_calib, tmp_path):
    """NNCF's quantize_with_accuracy_control (the OpenVINO fallback before the search's own ranking) on a damaged
    calibration set with bound 0: it reverts layers, and the attempt lists exactly the ops left unquantized."""
    from edgefer.data import prepare_splits
    from edgefer.export.calibration import CalibrationSet
    from edgefer.export.openvino import read_model
    from edgefer.spec import ModelSpec

    result = export(checkpoint, "onnx", "fp32", tmp_path, exporter="legacy")
    spec = ModelSpec.from_dict(result["spec"])
    val = prepare_splits(fer_csv).val
    quantizer = NncfQuantizer(tmp_path / "model.onnx", CalibrationSet.load(damaged_calib), spec,
                              QuantOptions(subset_size=64), validation=(val.images, val.labels, 0.0, 4))
    [recipe] = quantizer.fallback_recipes({"preset": "performance", "fast_bias_correction": True})
    assert recipe == {"preset": "performance", "fast_bias_correction": True, "accuracy_control": True}
    info = quantizer.quantize(recipe, [], tmp_path / "ac.xml")
    assert info["quantizer"] == "nncf.quantize_with_accuracy_control" and info["max_drop"] == 0.0
    assert info["fp32_layers"]  # one revert can un-quantize several ops (a shared quantizer), so no upper bound
    assert info["fp32_layers"] == _unquantized_ops(read_model(tmp_path / "ac.xml"))


# --- the share of convolution MACs in INT8, the order of fallbacks, what was kept in float, the runtime ------------

def _qdq_graph(height=8, width=8):
    """A hand-built Q/DQ graph with known MACs per image (dynamic batch, 3x8x8 input):
    conv_a 3->4 3x3 pad 1: quantized input and weight           8*8*4 * 3*3*3 = 6912 (INT8)
    conv_b depthwise 4->4 3x3 pad 1, group 4: quantized input,  8*8*4 * 1*3*3 = 2304 (float: FP32 weight)
    act Sigmoid; conv_c 1x1 stride 2 4->8: FP32 input, int8 weight  4*4*8 * 4 = 512 (float: FP32 input)
    conv_d 1x1 8->8 on quantized input and weight                   4*4*8 * 8 = 1024 (INT8)
    pool + flatten; fc Gemm 8->7 (transB) quantized                       7 * 8 = 56 (INT8)"""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def qdq(tensor):  # activation QuantizeLinear -> DequantizeLinear
        s, z = const(f"{tensor}_s", np.float32(0.05)), const(f"{tensor}_z", np.int8(0))
        nodes.append(helper.make_node("QuantizeLinear", [tensor, s, z], [f"{tensor}_q"], name=f"{tensor}_Q"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{tensor}_q", s, z], [f"{tensor}_dq"], name=f"{tensor}_DQ"))
        return f"{tensor}_dq"

    def int8_weight(name, shape, axis=0):
        q = const(f"{name}_q", rng.integers(-127, 127, shape).astype(np.int8))
        s = const(f"{name}_s", np.full(shape[axis], 0.01, np.float32))
        z = const(f"{name}_z", np.zeros(shape[axis], np.int8))
        nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [name], name=f"{name}_DQ", axis=axis))
        return name

    nodes.append(helper.make_node("Conv", [qdq("x"), int8_weight("wa", (4, 3, 3, 3))], ["a"], name="conv_a",
                                  pads=[1, 1, 1, 1]))
    wb = const("wb", rng.standard_normal((4, 1, 3, 3)).astype(np.float32))
    nodes.append(helper.make_node("Conv", [qdq("a"), wb], ["b"], name="conv_b", pads=[1, 1, 1, 1], group=4))
    nodes.append(helper.make_node("Sigmoid", ["b"], ["s"], name="act"))
    nodes.append(helper.make_node("Conv", ["s", int8_weight("wc", (8, 4, 1, 1))], ["c"], name="conv_c",
                                  strides=[2, 2]))
    nodes.append(helper.make_node("Conv", [qdq("c"), int8_weight("wd", (8, 8, 1, 1))], ["d"], name="conv_d"))
    nodes.append(helper.make_node("GlobalAveragePool", ["d"], ["p"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["p"], ["f"], name="flatten"))
    nodes.append(helper.make_node("Gemm", [qdq("f"), int8_weight("wfc", (7, 8))], ["y"], name="fc", transB=1))
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, height, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 7])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def test_conv_mac_share_of_a_hand_built_qdq_graph(tmp_path):
    import onnx

    from edgefer.export.quantizers.macs import onnx_layer_map
    from edgefer.export.search.selection import conv_share_text
    from edgefer.spec import ModelSpec

    model = _qdq_graph()
    layers = onnx_layer_map(model)
    assert [(c.name, c.op, c.macs, c.int8) for c in layers.convs] == [
        ("conv_a", "Conv", 6912, True), ("conv_b", "Conv", 2304, False), ("conv_c", "Conv", 512, False),
        ("conv_d", "Conv", 1024, True), ("fc", "Gemm", 56, True)]
    assert layers.share() == {"share": 7992 / 10808, "int8": 7992, "total": 10808}
    assert conv_share_text(layers.share()["share"]) == "conv MACs in INT8: 73.9 %"
    assert layers.kept_in_float(["act", "conv_c"]) == [
        {"node": "act", "op": "Sigmoid", "conv_macs": None}, {"node": "conv_c", "op": "Conv", "conv_macs": 512},
        {"node": "conv_b", "op": "Conv", "conv_macs": 2304}]
    # the Q/DQ adapter reads the same from a file; ONNX Runtime runs the graph (it is a valid model)
    onnx.save(model, str(tmp_path / "g.onnx"))
    spec = ModelSpec(input_size=8, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert QdqQuantizer(tmp_path / "g.onnx", None, spec, QuantOptions()) \
        .layer_map(tmp_path / "g.onnx").share()["int8"] == 7992
    from edgefer.runtime.base import open_backend

    backend = open_backend(tmp_path / "g.onnx", "onnxruntime", spec=spec)
    assert backend.run(np.zeros((2, 3, 8, 8), np.float32)).shape == (2, 7)
    backend.close()
    # shapes that inference cannot know (here: symbolic height and width) are measured in one batch-1 run
    onnx.save(_qdq_graph("H", "W"), str(tmp_path / "symbolic.onnx"))
    assert [c.name for c in onnx_layer_map(onnx.load(str(tmp_path / "symbolic.onnx"))).convs] == ["fc"]
    measured = QdqQuantizer(tmp_path / "symbolic.onnx", None, spec, QuantOptions()).layer_map(tmp_path / "symbolic.onnx")
    assert measured.convs == layers.convs


class _FakeQuantizer:
    """A quantizer whose models are JSON notes of (recipe, excluded) and whose 'accuracy' is decided by the test:
    the order of the search's attempts without any real quantization."""

    name, runtime, suffix, qat = "fake", "onnxruntime", ".json", True
    recipes = ({"method": "m1"}, {"method": "m2"})
    conv_ops = ("Conv", "Gemm")
    ranking = [("c1", "Conv"), ("a1", "Add"), ("c2", "Conv"), ("s1", "Sigmoid"), ("a2", "Add")]
    macs = {"c1": 300, "c2": 100, "c3": 600}

    def __init__(self, calib):
        self.calib = calib

    def recipe_variants(self, best):
        return [{**best, "placement": "other"}]

    def fallback_recipes(self, base):
        return [{**base, "accuracy_control": True}]

    def quantize(self, recipe, excluded, path):
        path.write_text(json.dumps({"recipe": recipe, "excluded": list(excluded)}))
        return {"seconds": 0.0}

    def layer_map(self, path):
        from edgefer.export.quantizers.macs import ConvLayer, LayerMap

        excluded = json.loads(path.read_text())["excluded"]
        ops = {**dict(self.ranking), "c3": "Conv"}
        return LayerMap(ops, tuple(ConvLayer(n, "Conv", m, n not in excluded) for n, m in self.macs.items()))

    def sensitivity(self, path, x):
        return [{"layer": n, "op": op, "error_in": 0.0, "error_out": 1.0 - i / 10, "added_error": 1.0 - i / 10}
                for i, (n, op) in enumerate(self.ranking)]

    def copy(self, source, target):
        target.write_text(source.read_text())


def _fake_search(monkeypatch, tmp_path, passes, attempts=20, qat_source=None):
    """Run the search loop with ``_FakeQuantizer``; an attempt scores like FP32 when ``passes(note)``, else it
    flips a third of the predictions."""
    from edgefer.export.config import SearchOptions
    from edgefer.export.search import loop
    from edgefer.spec import ModelSpec

    labels = np.arange(70) % 7
    reference = np.eye(7, dtype=np.float32)[labels] * 5
    calib = SimpleNamespace(images=np.zeros((4, 16, 16), np.uint8), labels=np.arange(4) % 7)
    monkeypatch.setattr(loop, "create", lambda *a, **k: _FakeQuantizer(calib))

    def logits(path, images, spec, desc=""):
        note = json.loads(path.read_text())
        return reference if passes(note) else np.roll(reference, 1, axis=1) * (np.arange(70) % 3 == 0)[:, None] \
            + reference * (np.arange(70) % 3 != 0)[:, None]

    monkeypatch.setattr(check, "logits", logits)
    monkeypatch.setattr(check, "latency_ms", lambda path: 1.0)
    inputs = loop.SearchInputs(tmp_path / "fp32.onnx", ModelSpec(input_size=16), calib,
                               np.zeros((70, 16, 16), np.uint8), labels, reference, qat_source=qat_source)
    options = SearchOptions(max_drop=0.01, attempts=attempts)
    try:
        return loop.run(inputs, tmp_path / "out.json", options, QuantOptions(), target="tensorrt",
                        report_path=tmp_path / "int8_search.json")
    except ExportError:
        return json.loads((tmp_path / "int8_search.json").read_text())


def test_search_keeps_convolutions_in_int8_until_everything_else_failed(monkeypatch, tmp_path):
    report = _fake_search(monkeypatch, tmp_path, lambda note: "c2" in note["excluded"])
    steps = [(a["stage"], a["recipe"], a["excluded"]) for a in report["attempts"]]
    others = ["a1", "s1", "a2"]
    assert steps == [
        ("A", {"method": "m1"}, []), ("A", {"method": "m2"}, []),  # calibration recipes
        ("A", {"method": "m1", "placement": "other"}, []),  # recipe variants with the best recipe
        ("B", {"method": "m1"}, ["a1"]), ("B", {"method": "m1"}, ["a1", "s1"]),  # non-convolution layers only
        ("B", {"method": "m1"}, others),
        ("C", {"method": "m1", "accuracy_control": True}, []),  # the quantizer's own fallback that may take convs
        ("C", {"method": "m1"}, [*others, "c1"]), ("C", {"method": "m1"}, [*others, "c1", "c2"])]
    shares = [a["conv_macs_int8"] for a in report["attempts"]]
    assert shares[:7] == [1.0] * 7 and shares[7:] == [700 / 1000, 600 / 1000]
    assert all(a["conv_macs"]["total"] == 1000 for a in report["attempts"])
    chosen = report["attempts"][report["chosen"]]
    assert report["passed"] and chosen["index"] == 8 and report["conv_macs_int8"] == 0.6
    assert chosen["kept_in_float"] == [
        {"node": "a1", "op": "Add", "conv_macs": None}, {"node": "s1", "op": "Sigmoid", "conv_macs": None},
        {"node": "a2", "op": "Add", "conv_macs": None}, {"node": "c1", "op": "Conv", "conv_macs": 300},
        {"node": "c2", "op": "Conv", "conv_macs": 100}]
    assert report["sensitivity"]["conv_layers"] == 2 and report["sensitivity"]["non_conv_layers"] == 3


def test_search_stops_at_non_convolution_fallback_when_it_passes(monkeypatch, tmp_path):
    from edgefer.export.search.selection import describe_attempt

    report = _fake_search(monkeypatch, tmp_path, lambda note: "s1" in note["excluded"])
    assert [(a["stage"], a["excluded"]) for a in report["attempts"][3:]] == [("B", ["a1"]), ("B", ["a1", "s1"])]
    chosen = report["attempts"][report["chosen"]]
    assert chosen["conv_macs_int8"] == 1.0 and chosen["excluded"] == ["a1", "s1"]
    assert describe_attempt(chosen) == "method=m1, 2 layer(s) kept in float, conv MACs in INT8: 100.0 %"
    assert describe_kept(chosen) == "2 kept in float: a1 (Add), s1 (Sigmoid)"
    # the count agrees with the list, also when the quantizer keeps more layers in float than the search excluded
    many = {**chosen, "excluded_count": 0,
            "kept_in_float": [{"node": f"n{i}", "op": "Mul", "conv_macs": None} for i in range(60)]}
    assert describe_attempt(many) == "method=m1, 60 layer(s) kept in float, conv MACs in INT8: 100.0 %"
    assert describe_kept(many) == ("60 kept in float: n0 (Mul), n1 (Mul), n2 (Mul), n3 (Mul), n4 (Mul), n5 (Mul) "
                                   "and 54 more")
    # a recipe that passes ends the search before any layer leaves INT8
    report = _fake_search(monkeypatch, tmp_path, lambda note: note["recipe"].get("placement") == "other")
    assert [a["stage"] for a in report["attempts"]] == ["A", "A", "A"] and report["conv_macs_int8"] == 1.0
    assert describe_kept(report["attempts"][report["chosen"]]) == "nothing kept in float"


def test_attempts_are_timed_through_the_runtime_with_deployment_settings(checkpoint, fer_csv, tmp_path, monkeypatch):
    """The search scores and times every attempt through edgefer.runtime.open_backend: the latency runs are
    batch-1 calls on the attempt's file opened with the runtime's defaults (no threads, no precision override),
    what EmotionRecognizer.open deploys."""
    from edgefer.data import prepare_splits
    from edgefer.export.config import SearchOptions
    from edgefer.export.search import SearchInputs, run
    from edgefer.runtime import base
    from edgefer.spec import ModelSpec

    result = export(checkpoint, "onnx", "fp32", tmp_path / "fp32", exporter="legacy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        calib = from_data(fer_csv, 64, floor=4)
    spec = ModelSpec.from_dict(result["spec"])
    val = prepare_splits(fer_csv).val
    opened, real_open = [], base.open_backend

    def recording_open(path, backend=None, **kwargs):
        handle = real_open(path, backend, **kwargs)
        record = {"path": Path(path).name, "backend": backend, "threads": kwargs.get("threads"),
                  "precision": kwargs.get("precision"), "batches": []}
        opened.append(record)
        run_batch = handle.run
        handle.run = lambda x: (record["batches"].append(len(x)), run_batch(x))[1]
        return handle

    monkeypatch.setattr(base, "open_backend", recording_open)
    inputs = SearchInputs(tmp_path / "fp32" / "model.onnx", spec, calib, val.images, val.labels)
    report = run(inputs, tmp_path / "int8.onnx", SearchOptions(max_drop=0.5, attempts=1),
                 QuantOptions(quantizer="ort"), target="onnx")
    [attempt] = report["attempts"]
    timed = [r for r in opened if r["path"] == "attempt-0.onnx" and set(r["batches"]) == {1}]
    assert len(timed) == 1 and len(timed[0]["batches"]) >= check.LATENCY_RUNS + check.LATENCY_WARMUP
    assert timed[0]["backend"] == "onnxruntime" and timed[0]["threads"] is None and timed[0]["precision"] is None
    scored = [r for r in opened if r["path"] == "attempt-0.onnx" and r is not timed[0]]
    assert len(scored) == 1 and sum(scored[0]["batches"]) == len(val.images)
    assert attempt["latency_ms"] > 0 and attempt["conv_macs_int8"] == 1.0


def test_qat_comes_after_the_non_convolution_fallback_and_before_convolutions_leave_int8(monkeypatch, tmp_path):
    """From a checkpoint, quantization-aware fine-tuning is tried once Stage B failed; when it passes, every
    convolution stays INT8. Without the qat extra the stage is skipped with a note."""
    import importlib.util

    from edgefer.export.search import loop

    produced = []

    def qat_graph(checkpoint, data, epochs, path):
        produced.append((checkpoint, data, epochs))
        path.write_text(json.dumps({"recipe": {"qat_epochs": epochs}, "excluded": []}))
        return {"seconds": 0.0}

    monkeypatch.setattr(loop, "qat_graph", qat_graph)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "modelopt"
                        else real_find_spec(name, *a))
    report = _fake_search(monkeypatch, tmp_path, lambda note: "qat_epochs" in note["recipe"],
                          qat_source=("run", "data.csv"))
    stages = [a["stage"] for a in report["attempts"]]
    assert stages == ["A", "A", "A", "B", "B", "B", "QAT"] and produced == [("run", "data.csv", 1)]
    chosen = report["attempts"][report["chosen"]]
    assert chosen["stage"] == "QAT" and report["conv_macs_int8"] == 1.0
    assert chosen["recipe"] == {"qat_epochs": 1, "engine": "nvidia-modelopt"}
    # QAT that does not pass: the convolution fallback follows, as without a checkpoint
    report = _fake_search(monkeypatch, tmp_path, lambda note: "c2" in note["excluded"], qat_source=("run", None))
    assert [a["stage"] for a in report["attempts"]][6:] == ["QAT", "C", "C", "C"]
    # no ModelOpt: skipped, said in the report
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "modelopt"
                        else real_find_spec(name, *a))
    report = _fake_search(monkeypatch, tmp_path, lambda note: "c2" in note["excluded"], qat_source=("run", None))
    assert "QAT" not in [a["stage"] for a in report["attempts"]]
    assert report["qat"] == "skipped: quantization-aware fine-tuning needs pip install 'edgefer[qat]'"


@pytest.mark.skipif(importlib.util.find_spec("modelopt") is None, reason="needs edgefer[qat] (nvidia-modelopt)")
def test_int8_search_tries_qat_from_a_checkpoint_before_convolutions_leave_int8(checkpoint, fer_csv, damaged_calib,
                                                                                 tmp_path):
    """A bound no post-training recipe meets: the search's QAT stage fine-tunes the checkpoint (edgefer.qat) and
    scores its Q/DQ graph like every other attempt, with every convolution in INT8, before Stage C."""
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", "--model", checkpoint, "--target", "tensorrt", "--int8", "--data", fer_csv,
                  "--calib", damaged_calib, "--max-drop", "0", "--min-agreement", "1.0", "--search-attempts", "7",
                  "--exporter", "legacy", "--out", out])
    report_path = tmp_path / "out.int8_search.json"
    if result.exit_code == 0:
        report = json.loads((out / "export.json").read_text())["int8_search"]
    else:
        assert result.exit_code == 2 and report_path.is_file(), result.output
        report = json.loads(report_path.read_text())
    stages = [a["stage"] for a in report["attempts"]]
    # every Stage-A recipe; no Stage B (NVIDIA's placement leaves this model no quantized non-convolution layer);
    # QAT before any convolution leaves INT8
    assert stages == ["A"] * (len(CALIB_METHODS) + max(len(PLACEMENTS) - 1, 0)) + ["QAT"]
    qat = report["attempts"][-1]
    assert qat["recipe"] == {"qat_epochs": 1, "engine": "nvidia-modelopt"}
    assert qat["conv_macs_int8"] == 1.0 and qat["excluded"] == [] and 0.0 < qat["top1_agreement"] <= 1.0
