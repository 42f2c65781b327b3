"""edgefer info (and the spec) on broken artefacts: one line, exit 2, never a traceback; a spec that does not
parse is a note (info shows broken artefacts), and a spec with the wrong types never passes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgefer.cli import main
from edgefer.errors import ModelError
from edgefer.spec import ModelSpec

onnx = pytest.importorskip("onnx")

IR = """<?xml version="1.0"?>
<net name="m" version="11">
  <layers>
    <layer id="0" name="input" type="Parameter" version="opset1">
      <data shape="1,1,8,8" element_type="f32"/>
      {parameter_output}
    </layer>
    <layer id="1" name="out" type="Result" version="opset1">
      <input><port id="0" precision="FP32"><dim>1</dim><dim>1</dim><dim>8</dim><dim>8</dim></port></input>
    </layer>
  </layers>
  <edges><edge from-layer="0" from-port="0" to-layer="1" to-port="0"/></edges>
</net>
"""
GOOD_PORT = '<output><port id="0" precision="FP32" names="input"><dim>1</dim>{dim}<dim>8</dim><dim>8</dim></port></output>'


def _info(path, *args):
    return CliRunner().invoke(main, ["info", str(path), *args])


def _onnx_model(path, elem_type=None):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, 8, 8])
    if elem_type is not None:
        x.type.tensor_type.elem_type = elem_type
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def _one_line_error(result, start: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [result.output.strip()] and result.output.startswith(
        f"edgefer: error: {start}"), result.output


@pytest.mark.parametrize("dim, why", [
    ("<dim>abc</dim>", "has <dim>abc</dim>, not an integer"),
    ("<dim></dim>", "has <dim></dim>, not an integer"),
    ("<dim/>", "has <dim></dim>, not an integer"),
])
def test_ir_with_a_dimension_that_is_not_a_number(tmp_path, dim, why):
    xml = tmp_path / "m.xml"
    xml.write_text(IR.format(parameter_output=GOOD_PORT.format(dim=dim)))
    _one_line_error(_info(xml), f"{xml}: not a valid OpenVINO IR: Parameter layer 'input' {why}")


def test_ir_parameter_without_a_port(tmp_path):
    xml = tmp_path / "m.xml"
    xml.write_text(IR.format(parameter_output=""))
    _one_line_error(_info(xml), f"{xml}: not a valid OpenVINO IR: Parameter layer 'input' has no output port")
    xml.write_text(IR.format(parameter_output=GOOD_PORT.format(dim="<dim>1</dim>")).replace(
        '<input><port id="0" precision="FP32"><dim>1</dim><dim>1</dim><dim>8</dim><dim>8</dim></port></input>', ""))
    _one_line_error(_info(xml), f"{xml}: not a valid OpenVINO IR: Result layer 'out' has no input port")


def test_well_formed_ir_still_reads(tmp_path):
    xml = tmp_path / "m.xml"
    xml.write_text(IR.format(parameter_output=GOOD_PORT.format(dim="<dim>-1</dim>")))
    result = _info(xml, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inputs"] == [{"name": "input", "shape": [1, "?", 8, 8], "dtype": "float32"}]


def test_onnx_with_an_unknown_element_type(tmp_path):
    model = _onnx_model(tmp_path / "m.onnx", elem_type=999)
    _one_line_error(_info(model), f"{model}: not a valid ONNX model: tensor 'input' has an unknown element type 999")


def test_empty_or_non_onnx_files_are_refused(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    _one_line_error(_info(empty), f"{empty}: not an ONNX model (the file is empty)")
    json_named_onnx = tmp_path / "spec.onnx"  # protobuf parses these bytes as an empty model
    json_named_onnx.write_bytes(b"\n\x00")
    _one_line_error(_info(json_named_onnx), f"{json_named_onnx}: not an ONNX model (no IR version or graph)")


def test_model_json_that_is_not_an_object(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.json").write_text("[]")
    (run / "best.safetensors").write_bytes(b"x")
    for target in (run, run / "model.json"):
        _one_line_error(_info(target), f"{run / 'model.json'}: not an edgefer checkpoint description (a JSON list, "
                                       "expected an object)")


def test_non_utf8_sidecar_is_a_note_not_a_traceback(tmp_path):
    model = _onnx_model(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").write_bytes(b'{"labels": "\xff\xfe"}')
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    (tmp_path / "m.engine.json").write_bytes(b"\xff\xfe\x00")
    for path, byte in ((model, 12), (engine, 0)):
        result = _info(path, "--json")
        assert result.exit_code == 0, result.output
        got = json.loads(result.stdout)
        assert got["spec"] is None
        assert f"spec not valid: sidecar {path}.json: not UTF-8 text (byte {byte}: invalid start byte)" in got["notes"]
        assert got["files"][-1]["path"] == f"{path}.json"  # hashed like every file it read


@pytest.mark.parametrize("field, value", [("channels", 1.0), ("channels", True), ("input_size", 48.0),
                                          ("input_size", True)])
def test_spec_integers_must_be_integers(field, value, tmp_path):
    data = {**ModelSpec(input_size=48).to_dict(), field: value}
    with pytest.raises(ModelError, match=rf"^s.json: field '{field}' must be "):
        ModelSpec.from_dict(data, source="s.json")
    model = _onnx_model(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").write_text(json.dumps(data))
    result = _info(model, "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["spec"] is None and any(f"field '{field}' must be" in note for note in got["notes"])
    result = CliRunner().invoke(main, ["predict", str(tmp_path), "-m", str(model), "--no-detect"])
    _one_line_error(result, f"{model}.json: field '{field}' must be ")
