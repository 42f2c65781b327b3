"""Models as other tools make them (NHWC, fixed batch, softmax/sigmoid outputs, permuted labels, gray networks
taking RGB, other input scales), built from edgefer's tiny model: predictions equal the unmodified model's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgefer.errors import ModelError
from edgefer.runtime import EmotionRecognizer
from edgefer.runtime.recognizer import probabilities, softmax
from edgefer.spec import sidecar_path
from tests.backends import needs_onnxruntime, needs_openvino, needs_torch
from tests.runtime_models import SIZE, foreign_variant, shared_tiny

pytestmark = [needs_torch, needs_onnxruntime, needs_openvino]

PERM = [3, 6, 0, 5, 1, 4, 2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)


@pytest.fixture(scope="module")
def reference(tiny, images):
    return EmotionRecognizer.open(tiny.onnx).predict(images, color="gray", return_logits=True)


VARIANTS = {
    "nhwc": dict(layout="nhwc"),
    "softmax": dict(output="probabilities"),
    "batch1": dict(batch=1),
    "batch4": dict(batch=4),
    "nhwc_batch4_softmax": dict(layout="nhwc", batch=4, output="probabilities"),
    "gray_as_rgb_nhwc": dict(gray3=True, layout="nhwc"),
    "gray_as_rgb_nchw": dict(gray3=True),
    "scale_0_255": dict(scale="0..255"),
    "scale_0_1": dict(scale="0..1"),
    "scale_minus1_1": dict(scale="-1..1"),
}


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_foreign_model_predicts_like_the_original(tiny, images, reference, tmp_path, variant, backend):
    path, _ = foreign_variant(tiny, tmp_path, variant, **VARIANTS[variant])
    with EmotionRecognizer.open(path, backend=backend, threads=1) as rec:
        assert rec.backend.layout == VARIANTS[variant].get("layout", "nchw")  # read from the input shape
        pred = rec.predict(images, color="gray")
        assert pred.labels == reference.labels
        assert np.abs(pred.probs - reference.probs).max() < 2e-5
        if VARIANTS[variant].get("gray3"):  # the gray plane of BGR faces, replicated: same result
            bgr = np.repeat(images[..., None], 3, axis=-1)
            assert np.abs(rec.predict(bgr).probs - reference.probs).max() < 2e-5
        for n in (1, 3, 5):  # every batch size, also on fixed-batch models
            assert np.abs(rec.predict(images[:n, ..., None], color="gray").probs - reference.probs[:n]).max() < 2e-5


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_permuted_labels_and_sigmoid_outputs(tiny, images, reference, tmp_path, backend):
    path, spec = foreign_variant(tiny, tmp_path, "perm", perm=PERM)
    pred = EmotionRecognizer.open(path, backend=backend).predict(images, color="gray")
    assert list(pred.class_names) == [tiny.spec.labels[i] for i in PERM]
    assert pred.labels == reference.labels  # the same emotion, by name
    assert np.abs(pred.probs - reference.probs[:, PERM]).max() < 2e-5
    path, _ = foreign_variant(tiny, tmp_path, "sigmoid", output="sigmoid")
    pred = EmotionRecognizer.open(path, backend=backend).predict(images, color="gray", return_logits=True)
    sig = 1 / (1 + np.exp(-reference.logits.astype(np.float64)))
    assert np.abs(pred.logits - sig).max() < 1e-5  # the raw outputs are the sigmoid scores
    assert np.abs(pred.probs - sig / sig.sum(1, keepdims=True)).max() < 1e-5  # normalised, not softmaxed
    assert pred.labels == reference.labels


def test_probabilities_per_output_kind():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    assert np.allclose(probabilities(logits, "logits"), softmax(logits))
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.49, -1e-4]], np.float32)
    out = probabilities(probs, "probabilities")
    assert np.allclose(out[0], probs[0]) and out[1, 2] == 0 and np.allclose(out.sum(1), 1)
    sig = np.array([[0.9, 0.9, 0.2], [0.0, 0.0, 0.0]], np.float32)
    assert np.allclose(probabilities(sig, "sigmoid"), [[0.45, 0.45, 0.1], [1 / 3] * 3])
    with pytest.raises(ModelError, match=r"m.onnx: the model returned NaN or infinite outputs for face\(s\) \[1\]"):
        probabilities(np.array([[0, 1], [np.nan, 1]], np.float32), "logits", "m.onnx")


def test_layout_and_batch_mismatches_are_explained(tiny, tmp_path):
    path, spec = foreign_variant(tiny, tmp_path, "nhwc4", layout="nhwc", batch=4)
    sidecar = sidecar_path(path)
    sidecar.write_text(spec.replace(layout="nchw").to_json())
    with pytest.raises(ModelError, match=r"input 'x' of shape \[4, 32, 32, 1\] has 32 channel\(s\) but the spec says "
                                         r"channels=1 \(layout nchw\)"):
        EmotionRecognizer.open(path)
    sidecar.write_text(spec.replace(batch=2).to_json())
    with pytest.raises(ModelError, match=r"accepts batch 4 but the spec says batch=2"):
        EmotionRecognizer.open(path)
    path, spec = foreign_variant(tiny, tmp_path, "rgb", gray3=True)
    sidecar_path(path).write_text(tiny.spec.to_json())  # a 1-channel spec for a 3-channel gray network
    with pytest.raises(ModelError, match=r'has 3 channel\(s\) but the spec says channels=1 \(layout nchw\) \(a gray '
                                         r'network fed replicated RGB: "channels": 3, "color_order": "gray"'):
        EmotionRecognizer.open(path)


def test_fixed_batch_from_the_spec_on_a_dynamic_model(tiny, images, reference, tmp_path):
    plain = tiny.copy_onnx(tmp_path, "plain.onnx", metadata=False)
    sidecar_path(plain).write_text(tiny.spec.replace(batch=4).to_json())
    rec = EmotionRecognizer.open(plain)
    calls = []
    real = rec.backend._infer
    rec.backend._infer = lambda x: calls.append(len(x)) or real(x)
    assert np.abs(rec.predict(images, color="gray").probs - reference.probs).max() < 1e-6
    assert calls == [4, 4]


def test_missing_sidecar_messages(tiny, tmp_path):
    plain = tiny.copy_onnx(tmp_path, "five.onnx", metadata=False)
    with pytest.raises(ModelError) as err:
        EmotionRecognizer.open(plain)
    message = str(err.value)
    assert f"no sidecar {sidecar_path(plain)}; write that file as JSON: " in message
    assert message.endswith(f"[this model: input 'input' [?, 1, {SIZE}, {SIZE}], 7 outputs]")
    with pytest.raises(ModelError, match=r"sidecar .*nope.json does not exist \(given for .*five.onnx\)"):
        EmotionRecognizer.open(plain, sidecar=tmp_path / "nope.json")
    sidecar_path(plain).write_text(json.dumps({**tiny.spec.to_dict(), "labels": "happy"}))
    with pytest.raises(ModelError, match=r"five.onnx.json: field 'labels' must be a list of strings, got 'happy'"):
        EmotionRecognizer.open(plain)


def test_detect_output_kind():
    from edgefer.runtime.recognizer import detect_output_kind

    assert detect_output_kind(np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]]))[0] == "probabilities"
    assert detect_output_kind(np.array([[0.9, 0.8, 0.1], [0.0, 0.1, 0.2]]))[0] == "sigmoid"
    kind, evidence = detect_output_kind(np.array([[2.0, -1.0, 0.5]]))
    assert kind == "logits" and evidence == "values in [-1, 2], outside [0, 1]"
    assert np.allclose(probabilities(np.array([[0.7, 0.2, 0.1]], np.float32), "auto"), [[0.7, 0.2, 0.1]])


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_output_kind_is_detected_when_not_declared(tiny, images, reference, tmp_path, backend):
    """A softmax model whose sidecar says nothing about its output: predict() returns the model's own
    probabilities (never a softmax of them); a sigmoid model is detected as such."""
    import warnings

    from edgefer.runtime import OutputKindWarning

    for output in ("probabilities", "sigmoid"):
        path, _ = foreign_variant(tiny, tmp_path, f"undeclared-{output}", output=output)
        sidecar = sidecar_path(path)
        data = json.loads(sidecar.read_text())
        del data["output"]
        sidecar.write_text(json.dumps(data))
        with warnings.catch_warnings():
            warnings.simplefilter("error", OutputKindWarning)
            with EmotionRecognizer.open(path, backend=backend, threads=1) as rec:
                assert rec.spec.output == "auto" and rec.output_kind is None
                pred = rec.predict(images, color="gray", return_logits=True)
                assert rec.spec.output == output and rec.output_kind["source"] == "detected"
                assert rec.output_kind["kind"] == output
                if output == "probabilities":
                    assert np.abs(pred.probs - pred.logits).max() <= 1e-6  # the model's own probabilities
                    assert np.abs(pred.probs - reference.probs).max() < 2e-5
                else:
                    assert np.abs(pred.probs - pred.logits / pred.logits.sum(1, keepdims=True)).max() <= 1e-6
                assert pred.labels == reference.labels


def test_a_declared_kind_the_outputs_contradict_is_one_warning(tiny, images, tmp_path):
    import warnings

    from edgefer.runtime import OutputKindWarning

    path, _ = foreign_variant(tiny, tmp_path, "softmax-declared-logits", output="probabilities")
    sidecar = sidecar_path(path)
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "output": "logits"}))
    with EmotionRecognizer.open(path) as rec, pytest.warns(OutputKindWarning) as caught:
        rec.predict(images, color="gray")
        rec.predict(images, color="gray")
    assert len(caught) == 1 and caught[0].filename == str(path)
    message = str(caught[0].message)
    assert "\n" not in message and message.startswith(
        "the spec declares output 'logits' but the first outputs look like probabilities (every value in [0, 1]")
    assert rec.output_kind["source"] == "declared" and rec.spec.output == "logits"  # as declared
    with warnings.catch_warnings():  # edgefer's own logits model: declared, and no warning
        warnings.simplefilter("error", OutputKindWarning)
        with EmotionRecognizer.open(tiny.onnx) as rec:
            rec.predict(images, color="gray")
            assert rec.output_kind["kind"] == "logits" and rec.output_kind["source"] == "declared"
