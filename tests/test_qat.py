"""edgefer qat: quantization-aware fine-tuning end to end on a tiny timm model (test_efficientnet at 32 px)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

needs_qat = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "modelopt", "onnxruntime", "onnx")),
    reason="needs edgefer[qat] (torch, nvidia-modelopt, onnxruntime)")


def _cli(*args):
    from edgefer.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def fp32_run(fer_csv, tmp_path_factory):
    """A tiny FP32 checkpoint: a few optimizer steps of test_efficientnet at 32 px."""
    run = tmp_path_factory.mktemp("qat") / "fp32"
    result = _cli("train", "--data", fer_csv, "--out", run, "--arch", "test_efficientnet", "--img-size", "32",
                  "--batch-size", "32", "--epochs", "1", "--max-steps", "6", "--threads", "1", "--seed", "3")
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture(scope="module")
def qat_run(fp32_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("qat") / "qat"
    result = _cli("qat", "--from", fp32_run, "--out", out, "--epochs", "1", "--limit-train", "64",
                  "--calib-size", "64", "--threads", "1", "--no-openvino")
    assert result.exit_code == 0, result.output
    return out, result.output


@needs_qat
def test_qat_exports_a_tensorrt_qdq_graph_that_runs_and_reports_agreement(fp32_run, qat_run, fer_csv):
    import onnx

    from edgefer.data import prepare_splits
    from edgefer.export.onnx import torch_logits
    from edgefer.metrics import agreement
    from edgefer.models import load_checkpoint
    from edgefer.runtime import EmotionRecognizer

    out, output = qat_run
    result = json.loads((out / "qat.json").read_text())
    has_cache = importlib.util.find_spec("edgefer.export.trt_cache") is not None
    expected = ["model_fp32.onnx", "model_qdq.onnx", "qat.json", "qat.safetensors", "qat_scales.json"]
    assert sorted(result["files"]) == sorted(expected + (["model_qdq.calib"] if has_cache else []))
    assert sorted(p.name for p in out.iterdir()) == result["files"]

    # TensorRT placement: Q/DQ on every Conv and Gemm input, nothing quantized feeds Sigmoid / Mul / Add / pooling
    graph = onnx.load(str(out / "model_qdq.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(convs) > 10
    for node in convs:
        for name in node.input[:2]:  # activation and weight
            assert producer[name].op_type == "DequantizeLinear", (node.name, name)
            quantize = producer[producer[name].input[0]]
            assert quantize.op_type == "QuantizeLinear"
    dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    fed = {n.op_type for n in graph.node if any(i in dq for i in n.input)}
    assert fed == {"Conv", "Gemm"}
    assert "Sigmoid" in {n.op_type for n in graph.node}  # the SE gates are there, in float
    assert result["qdq_nodes"]["QuantizeLinear"] == 2 * len(convs)
    assert result["scales"] == len(convs)

    # the reported agreement is the one edgefer.runtime gives on the test split
    splits = prepare_splits(fer_csv, val_fraction=0.1, seed=3)
    test = splits.test
    model, spec, _ = load_checkpoint(fp32_run)
    reference = torch_logits(model, test.images, spec).argmax(1)
    recognizer = EmotionRecognizer.open(out / "model_qdq.onnx", threads=1)
    assert recognizer.spec.precision == "int8" and recognizer.spec.input_size == 32
    predicted = recognizer.predict(test.images, color="gray").indices
    row = {r["model"]: r for r in result["fidelity"]}["onnxruntime-qdq"]
    assert result["split"] == "test" and result["images"] == len(test)
    assert row["agreement"] == pytest.approx(agreement(reference, predicted), abs=1.5 / len(test))
    assert set({r["model"] for r in result["fidelity"]}) == {"pytorch-fake-quant-ptq", "pytorch-fake-quant-qat",
                                                              "onnxruntime-qdq"}
    assert f"onnxruntime-qdq: agreement {row['agreement']:.4f}" in output
    assert result["synthetic"] is True and output.count("[SYNTHETIC data]") == 3  # one line per measured model

    # scales JSON: one positive per-tensor scale per quantized activation, named as in the graph
    scales = json.loads((out / "qat_scales.json").read_text())["scales"]
    names = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    assert set(scales) <= names and len(scales) == len(convs)
    assert all(v > 0 for v in scales.values())
    # the FP32 graph for TensorRT implicit INT8 has no Q/DQ and every scale's tensor under the same name
    fp32_graph = onnx.load(str(out / "model_fp32.onnx")).graph
    assert not {n.op_type for n in fp32_graph.node} & {"QuantizeLinear", "DequantizeLinear"}
    tensors = {t for n in fp32_graph.node for t in n.input} | {i.name for i in fp32_graph.input}
    assert set(scales) <= tensors
    assert EmotionRecognizer.open(out / "model_fp32.onnx").spec.precision == "fp32"
    if has_cache:  # the TensorRT 10 calibration cache carries the same scales
        from edgefer.export.trt_cache import read_cache

        cache = read_cache(out / "model_qdq.calib")
        assert result["calibration_cache"] == "model_qdq.calib"
        assert set(cache.scales) == set(scales)
        assert all(cache.scales[k] == pytest.approx(v, rel=1e-6) for k, v in scales.items())
    else:
        assert result["calibration_cache"] is None
    assert "edgefer qat --from" in result["command"] and result["engine"]["engine"] == "nvidia-modelopt"

    # calibration images come from the run's own training split (its seed), never from its validation split
    run_splits = json.loads((Path(fp32_run) / "splits.json").read_text())["splits"]
    calibration_ids = set(result["calibration"]["ids"])
    assert len(calibration_ids) == 64 and calibration_ids <= set(run_splits["train"]["ids"])


@needs_qat
def test_qat_onnx_matches_the_fake_quantized_pytorch_model(qat_run):
    out, _ = qat_run
    rows = {r["model"]: r for r in json.loads((out / "qat.json").read_text())["fidelity"]}
    # ONNX Runtime runs the same Q/DQ arithmetic as ModelOpt's fake quantization: near-identical predictions
    assert abs(rows["onnxruntime-qdq"]["agreement"] - rows["pytorch-fake-quant-qat"]["agreement"]) <= 0.05


@pytest.mark.parametrize("args, message", [
    (["--out", "x"], "--from is required: the training run to fine-tune"),
    (["--from", "nowhere", "--out", "x"], "--from nowhere: no such run directory"),
    (["--from", "nowhere", "--out", "x", "--distill", "2"], "--distill: must be a finite number in [0, 1], got 2"),
    (["--from", "nowhere", "--out", "x", "--epochs", "0"], "--epochs: must be an integer in [1, 100000], got 0"),
])
def test_qat_user_errors_are_one_line_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _cli("qat", *args)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"edgefer: error: {message}"


@needs_qat
def test_qat_refuses_to_overwrite(fp32_run, qat_run):
    out, _ = qat_run
    result = _cli("qat", "--from", fp32_run, "--out", out)
    assert result.exit_code == 2
    assert result.output.strip() == f"edgefer: error: --out {out}: already exists; pass --exist-ok to replace it"


def test_every_config_field_is_an_option():
    from dataclasses import fields

    from edgefer.cli.qat import _OPTIONS, _field
    from edgefer.qat import QatConfig

    assert sorted(_field(d) for d, _, _ in _OPTIONS) == sorted(f.name for f in fields(QatConfig))


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs onnx")
def test_activation_amax_reads_per_tensor_scales(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgefer.qat import activation_amax, qdq_node_counts

    weight = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "w")
    nodes = [
        helper.make_node("Constant", [], ["s"], value=numpy_helper.from_array(np.array(0.5, np.float32))),
        helper.make_node("Constant", [], ["z"], value=numpy_helper.from_array(np.array(0, np.int8))),
        helper.make_node("Constant", [], ["ws"], value=numpy_helper.from_array(np.array([0.1, 0.2], np.float32))),
        helper.make_node("Constant", [], ["wz"], value=numpy_helper.from_array(np.zeros(2, np.int8))),
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("QuantizeLinear", ["w", "ws", "wz"], ["wq"], axis=0),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["y"]),
        helper.make_node("Sigmoid", ["y"], ["out"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [weight])
    path = Path(tmp_path) / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    assert activation_amax(path) == {"x": pytest.approx(63.5)}
    assert qdq_node_counts(path) == {"Conv": 1, "DequantizeLinear": 2, "QuantizeLinear": 2}



@needs_qat
def test_qat_placement_on_tf_efficientnetv2_s_matches_the_post_training_one(tmp_path):
    """tf_efficientnetv2_s: every Add of a residual block reads two dequantized inputs and every convolution, the
    "same"-padded strided ones (timm Conv2dSame) included, a dequantized input and weight: the placement
    `edgefer export --target tensorrt --int8` uses."""
    import onnx
    import torch

    from edgefer.models import create_model, spec_for
    from edgefer.qat import count_quantizers, insert_fake_quantization
    from edgefer.qat.graph import export_graphs

    images = np.random.default_rng(0).integers(0, 256, (8, 48, 48), dtype=np.uint8)
    torch.manual_seed(0)
    model = create_model("tf_efficientnetv2_s", drop_rate=0.0, drop_path_rate=0.0).eval()
    spec = spec_for(model, 32, arch="tf_efficientnetv2_s")
    model = insert_fake_quantization(model, images, spec, residual=True)
    # 166 Conv/Linear + 5 "same"-padded strided Conv2dSame layers x (input, weight) + 35 Adds x 2
    assert count_quantizers(model) == 2 * (166 + 5) + 2 * 35
    export_graphs(model, spec, tmp_path, False, {})
    graph = onnx.load(str(tmp_path / "model_qdq.onnx")).graph
    dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    adds = [n for n in graph.node if n.op_type == "Add" and all(i in dq for i in n.input)]
    assert len(adds) == 35
    # every convolution reads a dequantized input and weight: the whole network's conv MACs in INT8
    from edgefer.export.config import QuantOptions
    from edgefer.export.quantizers.qdq import QdqQuantizer

    layers = QdqQuantizer(tmp_path / "model_qdq.onnx", None, spec, QuantOptions()).layer_map(tmp_path / "model_qdq.onnx")
    assert len(layers.convs) == 171 and layers.share()["share"] == 1.0
