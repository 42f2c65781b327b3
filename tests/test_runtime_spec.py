"""ModelSpec's model-contract fields (layout, output kind, fixed batch), layout inference and sidecar messages."""

from __future__ import annotations

import json

import pytest

from edgefer.errors import ModelError
from edgefer.spec import ModelSpec, infer_layout, read_sidecar, sidecar_path


def test_new_fields_default_and_round_trip():
    old = {"labels": ["a", "b"], "input_size": 48, "channels": 1, "mean": [0.5], "std": [0.5]}
    spec = ModelSpec.from_dict(old)  # a sidecar written before the fields existed still loads
    assert (spec.layout, spec.output, spec.batch) == (None, "auto", None)  # output not declared: detected when run
    assert ModelSpec().output == "logits"  # edgefer's own models declare it
    full = ModelSpec(labels=("x", "y", "z"), input_size=64, channels=3, mean=(0.0,) * 3, std=(1.0,) * 3,
                     color_order="gray", layout="NHWC", output="sigmoid", batch=4)
    assert full.layout == "nhwc"
    assert ModelSpec.from_json(full.to_json()) == full
    assert ModelSpec.from_dict(full.to_dict()) == full
    assert full.input_shape() == (4, 64, 64, 3)
    assert spec.input_shape(2) == (2, 1, 48, 48)


@pytest.mark.parametrize("change, message", [
    ({"labels": "happy"}, "field 'labels' must be a list of strings, got 'happy'"),
    ({"mean": 0.5}, "field 'mean' must be a list of numbers, got 0.5"),
    ({"std": ["x"]}, "field 'std' must be a list of numbers, got ['x']"),
    ({"layout": "chw"}, "field 'layout' must be one of nchw, nhwc (or left out to infer it), got 'chw'"),
    ({"output": "softmax"}, "field 'output' must be one of logits, probabilities, sigmoid, auto, got 'softmax'"),
    ({"batch": 0}, "field 'batch' must be an integer in 1..4096 (or null for any batch size), got 0"),
    ({"batch": "4"}, "field 'batch' must be an integer in 1..4096 (or null for any batch size), got '4'"),
    ({"extra": []}, "field 'extra' must be a JSON object, got []"),
])
def test_bad_fields_name_the_file_and_field(change, message):
    data = {**ModelSpec().to_dict(), **change}
    with pytest.raises(ModelError) as err:
        ModelSpec.from_dict(data, source="side.json")
    assert str(err.value) == f"side.json: {message}"


@pytest.mark.parametrize("shape, layout", [
    ((None, 1, 48, 48), "nchw"), ((-1, 3, 224, 224), "nchw"), ((None, 64, 64, 1), "nhwc"),
    ((1, 200, 200, 3), "nhwc"), ((None, None, None, 3), "nhwc"), ((None, 3, None, None), "nchw"),
])
def test_infer_layout(shape, layout):
    assert infer_layout(shape) == layout
    assert ModelSpec().with_layout_from(shape).layout == layout
    assert ModelSpec(layout="nchw").with_layout_from(shape).layout == "nchw"  # a stated layout wins


def test_infer_layout_ambiguous_or_not_an_image():
    with pytest.raises(ModelError, match=r'm.onnx: cannot tell the layout from the input shape \[\?, \?, \?, \?\]; '
                                         r'state it in the sidecar: "layout": "nchw" or "layout": "nhwc"'):
        infer_layout((None, None, None, None), "m.onnx")
    with pytest.raises(ModelError, match=r"cannot tell the layout .*\[1, 3, 3, 3\]"):
        infer_layout((1, 3, 3, 3))
    with pytest.raises(ModelError, match=r"shape \[1, 784\] is not a 4-d image batch"):
        infer_layout((1, 784))


def test_sidecar_messages(tmp_path):
    model = tmp_path / "m.onnx"
    with pytest.raises(ModelError) as err:
        read_sidecar(model)
    assert f"no sidecar {sidecar_path(model)}; write that file as JSON: " in str(err.value)
    assert '"layout", "output", "batch"' in str(err.value)
    with pytest.raises(ModelError, match=r"sidecar .*nope.json does not exist \(given for .*m.onnx\)"):
        read_sidecar(model, tmp_path / "nope.json")
    with pytest.raises(ModelError, match=r"sidecar .* is a directory"):
        read_sidecar(model, tmp_path)
    sidecar_path(model).write_text(json.dumps({**ModelSpec().to_dict(), "labels": "happy"}))
    with pytest.raises(ModelError, match=r"m.onnx.json: field 'labels' must be a list of strings, got 'happy'"):
        read_sidecar(model)


def test_docs_sidecar_examples_load():
    """Every JSON sidecar in docs/runtime.md's "Bring your own model" section is a valid spec."""
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs/runtime.md").read_text(encoding="utf-8")
    section = text.split("## Bring your own model", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```json\n")[1:]]
    specs = [ModelSpec.from_json(b, source=f"docs example {i}") for i, b in enumerate(blocks)]
    assert [(s.layout, s.output, s.batch, s.channels) for s in specs] == [
        ("nhwc", "probabilities", None, 1), (None, "auto", None, 3), ("nhwc", "probabilities", 1, 3)]  # auto: not declared
