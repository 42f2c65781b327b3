"""edgefer info on each artefact kind, built here from timm test_efficientnet at 32 px: FP32 / INT8 Q/DQ ONNX,
FP32 / FP16 / INT8 (FakeQuantize) OpenVINO IR, a TensorRT engine file (fake bytes + sidecar), a checkpoint."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgefer.cli import main
from edgefer.spec import FER2013_LABELS
from tests.backends import needs_onnxruntime, needs_openvino, needs_torch
from tests.cli_models import tiny_models
from tests.runtime_models import SIZE

pytestmark = [needs_torch, needs_onnxruntime, needs_openvino]


def info(*args) -> dict:
    result = CliRunner().invoke(main, ["info", *[str(a) for a in args], "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    import openvino as ov

    models = tiny_models()
    folder = tmp_path_factory.mktemp("info")
    qdq = shutil.copy(models.qdq, folder / "model.int8.qdq.onnx")
    ov.save_model(ov.convert_model(str(qdq)), str(folder / "model.int8.xml"))
    ov.save_model(ov.convert_model(str(models.exported.onnx)), str(folder / "model.fp16.xml"), compress_to_fp16=True)
    return models.exported, folder


def test_onnx_fp32_and_int8(artefacts):
    import onnx

    tiny, folder = artefacts
    got = info(tiny.onnx)
    assert got["files"] == [{"path": str(tiny.onnx), "size_bytes": tiny.onnx.stat().st_size,
                             "sha256": sha256(tiny.onnx)}]
    assert got["inputs"] == [{"name": "input", "shape": ["batch", 1, SIZE, SIZE], "dtype": "float32"}]
    assert got["outputs"] == [{"name": "logits", "shape": ["batch", 7], "dtype": "float32"}]
    assert (got["layout"], got["precision"], got["quantize_nodes"], got["opset"]) == ("nchw", "fp32", 0,
                                                                                     {"ai.onnx": 17})
    assert got["spec"]["labels"] == list(FER2013_LABELS) and got["spec"]["input_size"] == SIZE
    assert got["spec_source"] == "embedded (ONNX metadata_props 'edgefer.spec')"
    nodes = onnx.load(str(tiny.onnx)).graph.node
    assert got["node_count"] == len(nodes) and got["op_counts"]["Conv"] == sum(n.op_type == "Conv" for n in nodes)
    qdq_path = folder / "model.int8.qdq.onnx"
    qdq = info(qdq_path, "--top", 0)
    ops = [n.op_type for n in onnx.load(str(qdq_path)).graph.node]
    want = ops.count("QuantizeLinear") + ops.count("DequantizeLinear")
    assert want > 0 and (qdq["precision"], qdq["quantization"], qdq["quantize_nodes"]) == ("int8", "Q/DQ", want)
    assert sum(qdq["op_counts"].values()) == len(ops)  # --top 0: every op type
    text = CliRunner().invoke(main, ["info", str(qdq_path)]).output
    assert f"  precision int8 (Q/DQ: {want} nodes)" in text.splitlines()


def test_onnx_nhwc_input_and_sidecar(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Flatten", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 48, 48, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2304])])
    path = tmp_path / "keras.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    got = info(path)
    assert (got["layout"], got["spec"]) == ("nhwc", None)
    assert got["notes"] == [f"no preprocessing spec: nothing embedded and no sidecar at {path}.json"]
    sidecar = Path(f"{path}.json")
    sidecar.write_text(json.dumps({"labels": ["a", "b"], "input_size": 48, "channels": 1, "mean": [0], "std": [1]}))
    got = info(path)
    assert got["spec"]["labels"] == ["a", "b"] and got["spec_source"] == f"sidecar {sidecar}"
    assert got["files"][1] == {"path": str(sidecar), "size_bytes": sidecar.stat().st_size, "sha256": sha256(sidecar)}
    assert got["spec"]["output"] == "auto"  # the sidecar does not say what the outputs are
    text = CliRunner().invoke(main, ["info", str(path)]).output
    assert "            output not declared: detected from the model's first outputs when it runs\n" in text
    sidecar.write_text(json.dumps({"labels": ["a", "b"], "input_size": 48, "channels": 1, "mean": [0], "std": [1],
                                   "output": "sigmoid"}))
    assert "            output sigmoid (declared)\n" in CliRunner().invoke(main, ["info", str(path)]).output


def test_openvino_ir_fp32_fp16_int8(artefacts):
    tiny, folder = artefacts
    got = info(tiny.xml)
    assert [f["path"] for f in got["files"]] == [str(tiny.xml), str(tiny.xml.with_suffix(".bin"))]
    assert got["files"][1]["sha256"] == sha256(tiny.xml.with_suffix(".bin"))
    assert got["inputs"] == [{"name": "input", "shape": ["?", 1, SIZE, SIZE], "dtype": "float32"}]
    assert got["outputs"] == [{"name": "logits", "shape": ["?", 7], "dtype": "float32"}]
    assert (got["layout"], got["precision"]) == ("nchw", "fp32")
    assert got["spec_source"] == "embedded (OpenVINO rt_info 'edgefer.spec')" and got["spec"]["input_size"] == SIZE
    assert info(folder / "model.fp16.xml")["precision"] == "fp16"
    int8_xml = folder / "model.int8.xml"
    int8 = info(int8_xml)
    fake_quantize = int8_xml.read_text().count('type="FakeQuantize"')
    assert fake_quantize > 0 and (int8["precision"], int8["quantization"], int8["quantize_nodes"]) == (
        "int8", "FakeQuantize", fake_quantize)
    from edgefer.runtime.openvino import OpenVinoBackend

    for path in (tiny.xml, folder / "model.fp16.xml", int8_xml):  # the precision that executes here, read back
        deployed = OpenVinoBackend.open(path, spec=tiny.spec)  # the IR's spec, or one with a sidecar's defaults
        executed = deployed.precision
        deployed.close()
        assert info(path)["executes"] == {"runtime": "openvino", "device": "CPU", "precision": executed}
        if path != int8_xml:
            assert executed != "bf16"  # a float IR never computes in bf16 unless asked
    text = CliRunner().invoke(main, ["info", str(int8_xml)]).output
    assert f"  executes  {executed} float layers on CPU here (read back from openvino's compiled model" in text
    text = CliRunner().invoke(main, ["info", str(folder / "model.fp16.xml")]).output
    assert "  precision fp16\n  executes  f" in text and "bf16" not in text
    bin_only = CliRunner().invoke(main, ["info", str(int8_xml.with_suffix(".bin"))])
    assert bin_only.exit_code == 2
    assert bin_only.output == f"edgefer: error: {int8_xml.with_suffix('.bin')}: an OpenVINO weights file; give its .xml\n"


def test_tensorrt_engine_with_sidecar(artefacts, tmp_path, monkeypatch):
    tiny, _ = artefacts
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\x00fake engine bytes" * 100)
    Path(f"{engine}.json").write_text(json.dumps({"spec": {**tiny.spec.to_dict(), "precision": "int8"}}))
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # not installed
    got = info(engine)
    assert got["files"][0] == {"path": str(engine), "size_bytes": 1800, "sha256": sha256(engine)}
    assert got["spec"]["input_size"] == SIZE and got["precision"] == "int8" and got["inputs"] == []
    assert got["notes"] == ["install tensorrt to list bindings (pip install 'edgefer[tensorrt]' on the GPU host)"]


def test_checkpoint(artefacts, tmp_path):
    from edgefer.models import save_checkpoint

    tiny, _ = artefacts
    run = tmp_path / "run"
    save_checkpoint(run, tiny.model, tiny.spec, {"drop_rate": 0.0}, epoch=3, step=30, stop_reason="epochs",
                    synthetic=True, config={"loss": "weighted-ce", "lr": 0.001, "workers": 0},
                    metrics={"val": {"accuracy": 0.5, "macro_f1": 0.25, "n": 40, "per_class": {}}})
    for target in (run, run / "model.json", run / "best.safetensors"):
        got = info(target)
        assert got["kind"] == "checkpoint"
        assert [f["sha256"] for f in got["files"]] == [sha256(run / "best.safetensors"), sha256(run / "model.json")]
        assert got["checkpoint"] == {"arch": "test_efficientnet", "epoch": 3, "step": 30, "stop_reason": "epochs",
                                     "synthetic_data": True,
                                     "metrics": {"val": {"accuracy": 0.5, "macro_f1": 0.25, "n": 40}},
                                     "training": {"loss": "weighted-ce", "lr": 0.001}}
        assert got["spec"]["input_size"] == SIZE and got["notes"] == []
    shutil.copy(run / "model.json", tmp_path / "model.json")
    (run / "best.safetensors").write_bytes(b"changed")
    assert info(run)["notes"] == ["best.safetensors does not match the sha256 recorded in model.json"]


def test_unknown_and_broken_files(tmp_path):
    odd = tmp_path / "model.pt"
    odd.write_bytes(b"x")
    result = CliRunner().invoke(main, ["info", str(odd)])
    assert result.exit_code == 2 and result.output.startswith(
        f"edgefer: error: {odd}: cannot tell what this is from the suffix '.pt'")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\xff" * 10)
    result = CliRunner().invoke(main, ["info", str(broken)])
    assert result.exit_code == 2 and result.output.startswith(f"edgefer: error: {broken}: not a readable ONNX model")
    result = CliRunner().invoke(main, ["info", str(tmp_path / "none.onnx")])
    assert result.exit_code == 2 and "info: Invalid value for 'MODEL': Path" in result.output


def test_export_directory_names_its_models(artefacts):
    _, folder = artefacts
    result = CliRunner().invoke(main, ["info", str(folder)])
    assert result.exit_code == 2
    assert result.output == (f"edgefer: error: {folder}: a directory without model.json, so not an edgefer "
                             "checkpoint; give one of its model files: model.fp16.xml, model.int8.qdq.onnx, "
                             "model.int8.xml\n")


def test_tensorrt_engine_that_does_not_deserialise(tmp_path, monkeypatch):
    """With tensorrt importable (the suite's fake here), bytes that are no engine give a note, not a traceback."""
    import types

    fake = types.SimpleNamespace(Logger=type("Logger", (), {"ERROR": 0, "__init__": lambda self, level: None}),
                                 Runtime=lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda b: None))
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"junk")
    got = info(engine)
    assert got["kind"] == "tensorrt" and got["inputs"] == []
    assert got["notes"][-1] == ("bindings not listed: RuntimeError: TensorRT could not deserialise it (another "
                                "TensorRT version or GPU?)")


def test_dla_report_section(artefacts):
    tiny, folder = artefacts
    got = info(tiny.onnx, "--dla-report", 1)
    assert got["dla"]["nodes"] == got["node_count"] and got["dla"]["graph"] == []
    assert {f["op_type"] for f in got["dla"]["findings"]} <= {"GlobalAveragePool", "ReduceMean", "Flatten", "Gemm"}
    text = CliRunner().invoke(main, ["info", str(tiny.onnx), "--dla-report", "1"]).output
    assert "DLA check of" in text and "DLA layer, limits not checked" in text
    result = CliRunner().invoke(main, ["info", str(tiny.xml), "--dla-report", "1"])
    assert result.exit_code == 2 and "--dla-report applies to ONNX models, not to a openvino" in result.output
