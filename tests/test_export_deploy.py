"""``edgefer export --target deepstream`` and ``--target triton`` on a tiny ONNX classifier built with onnx.helper
(Flatten + Gemm, 16 px: milliseconds), plus one CLI export from a checkpoint. DeepStream: nvinfer's
``net-scale-factor * (x - offsets)`` equals ``edgefer.preprocess.prepare``, the config holds only documented
keys, labels in nvinfer's format, the INT8 cache. Triton: every config.pbtxt parses with Triton's own schema."""

import configparser
import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgefer.errors import ExportError
from edgefer.export import ExportConfig, deepstream, triton
from edgefer.export import export as run_export
from edgefer.spec import FER2013_LABELS, METADATA_KEY, ModelSpec
from tests.backends import needs, needs_onnxruntime, needs_openvino, needs_torch

pytestmark = [needs_onnxruntime]
SIZE = 16
needs_tritonclient = needs("tritonclient", "triton")


def tiny_onnx(folder, *, channels=1, mean=(0.5,), std=(0.5,), color_order="gray", batch=None, name="tiny"):
    """A 7-class classifier (Flatten -> Gemm) with the spec embedded; input (N, C, 16, 16), output logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgefer.spec import embed_in_onnx

    rng = np.random.default_rng(0)
    features = channels * SIZE * SIZE
    weights = numpy_helper.from_array(rng.normal(0, 0.2, (features, 7)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(0, 0.1, 7).astype(np.float32), "b")
    n = batch if batch is not None else "N"
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("Gemm", ["flat", "w", "b"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, channels, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, 7])], [weights, bias])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    spec = ModelSpec(input_size=SIZE, channels=channels, mean=mean, std=std, color_order=color_order, batch=batch)
    embed_in_onnx(proto, spec)
    path = folder / f"{name}.onnx"
    onnx.save(proto, str(path))
    return path, spec


def _key_file(path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str
    parser.read(path, encoding="utf-8")
    return parser


def _nvinfer_input(config: configparser.SectionProxy, planes: np.ndarray) -> np.ndarray:
    """What nvinfer feeds the network: y = net-scale-factor * (x - offsets[c]) on the scaled crop's planes."""
    scale = float(config["net-scale-factor"])
    offsets = np.array([float(v) for v in config["offsets"].split(";")], np.float64).reshape(1, -1, 1, 1)
    return scale * (planes.astype(np.float64) - offsets)


# ---- DeepStream ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ds_export(tmp_path_factory, fer_csv):
    folder = tmp_path_factory.mktemp("ds")
    path, spec = tiny_onnx(folder, mean=(0.43,), std=(0.27,))
    out = folder / "ds-fp32"
    result = run_export(path, ExportConfig.build("deepstream", "fp32"), out, data=fer_csv)
    return out, result, spec, path


def test_deepstream_preprocessing_equals_prepare_on_random_faces(ds_export):
    from edgefer.preprocess import prepare

    out, _, spec, _ = ds_export
    config = _key_file(out / deepstream.CONFIG_FILE)["property"]
    assert config["model-color-format"] == "2"  # GRAY
    faces = np.random.default_rng(1).integers(0, 256, (64, SIZE, SIZE), dtype=np.uint8)  # crops at network size
    expected = prepare(faces, spec, color="gray")
    got = _nvinfer_input(config, faces[:, None])
    assert np.abs(got - expected).max() <= 1e-6


@pytest.mark.parametrize("color_order, code", [("rgb", 0), ("bgr", 1)])
def test_deepstream_color_preprocessing_per_channel_offsets(color_order, code):
    from edgefer.preprocess import prepare

    spec = ModelSpec(input_size=SIZE, channels=3, mean=(0.485, 0.456, 0.406), std=(0.226,) * 3,
                     color_order=color_order)
    text = deepstream.nvinfer_config(spec, input_name="input", output_name="probabilities", precision="fp16",
                                     batch_size=16)
    parsed = deepstream.check_config(text)["property"]
    assert parsed["model-color-format"] == str(code) and parsed["network-mode"] == "2"
    assert len(parsed["offsets"].split(";")) == 3
    faces = np.random.default_rng(2).integers(0, 256, (32, SIZE, SIZE, 3), dtype=np.uint8)  # in the network's order
    planes = faces.transpose(0, 3, 1, 2)
    expected = prepare(faces, spec, color=color_order)
    assert np.abs(_nvinfer_input(parsed, planes) - expected).max() <= 1e-6


def test_deepstream_refuses_per_channel_std_and_replicated_gray():
    spec = ModelSpec(input_size=SIZE, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                     color_order="rgb")
    with pytest.raises(ExportError, match="net-scale-factor for every channel"):
        deepstream.preprocessing(spec)
    gray3 = ModelSpec(input_size=SIZE, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, color_order="gray")
    with pytest.raises(ExportError, match="channels 1"):
        deepstream.preprocessing(gray3)
    with pytest.raises(ExportError, match="';'"):
        deepstream.label_lines(("happy;ish", "sad"))


def test_deepstream_bundle_files_keys_labels_and_probabilities(ds_export):
    import onnx
    import onnxruntime as ort

    from edgefer.preprocess import prepare

    out, result, spec, source = ds_export
    assert result.target == "deepstream" and result.model == deepstream.MODEL_FILE
    for name in (deepstream.MODEL_FILE, deepstream.CONFIG_FILE, deepstream.LABELS_FILE, deepstream.APP_FILE,
                 deepstream.README_FILE):
        assert (out / name).is_file(), name
    parser = _key_file(out / deepstream.CONFIG_FILE)
    assert parser.sections() == ["property"]
    config = parser["property"]
    assert set(config) <= deepstream.NVINFER_KEYS  # only keys NVIDIA documents
    assert {k: config[k] for k in ("network-type", "process-mode", "network-mode", "infer-dims",
                                   "output-blob-names", "onnx-file", "labelfile-path", "classifier-threshold")} == {
        "network-type": "1", "process-mode": "2", "network-mode": "0", "infer-dims": f"1;{SIZE};{SIZE}",
        "output-blob-names": "probabilities", "onnx-file": deepstream.MODEL_FILE,
        "labelfile-path": deepstream.LABELS_FILE, "classifier-threshold": "0.0"}
    assert config["operate-on-gie-id"] == "1" and config["gie-unique-id"] == "2"
    assert "int8-calib-file" not in config
    app = _key_file(out / deepstream.APP_FILE)
    assert app.sections() == ["primary-gie", "secondary-gie0"]
    assert all(set(app[s]) <= deepstream.APP_GIE_KEYS for s in app.sections())
    assert app["secondary-gie0"]["config-file"] == deepstream.CONFIG_FILE
    # nvinfer's classifier label file: one line per output layer, labels separated by ';'
    assert (out / deepstream.LABELS_FILE).read_text() == ";".join(FER2013_LABELS) + "\n"
    # the output is probabilities: softmax of the source model's logits
    proto = onnx.load(str(out / deepstream.MODEL_FILE))
    assert [o.name for o in proto.graph.output] == ["probabilities"]
    embedded = ModelSpec.from_json({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    assert embedded.output == "probabilities"
    x = prepare(np.random.default_rng(3).integers(0, 256, (8, 48, 48), dtype=np.uint8), spec, color="gray")
    probs = ort.InferenceSession(str(out / deepstream.MODEL_FILE)).run(None, {"input": x})[0]
    logits = ort.InferenceSession(str(source)).run(None, {"input": x})[0]
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    assert np.abs(probs - softmax).max() < 1e-6
    check = result.conversion["deepstream"]["probabilities_check"]
    assert check["max_abs_prob_diff"] < 1e-5 and check["rows_sum_to_one"]
    assert result.checks["exported"]["top1_agreement"] == 1.0


def test_deepstream_int8_writes_the_calibration_cache(tmp_path, fer_csv):
    from edgefer.export.trt_cache import read_cache

    path, _ = tiny_onnx(tmp_path)
    out = tmp_path / "ds-int8"
    result = run_export(path, ExportConfig.build("deepstream", "int8", calib_size=32, calib_floor=2), out,
                        data=fer_csv)
    config = _key_file(out / deepstream.CONFIG_FILE)["property"]
    assert config["network-mode"] == "1" and config["int8-calib-file"] == deepstream.CALIB_FILE
    assert config["model-engine-file"] == f"{deepstream.MODEL_FILE}_b32_gpu0_int8.engine"
    cache = read_cache(out / deepstream.CALIB_FILE)
    assert cache.header == "TRT-100300-EntropyCalibration2"
    assert {"input", "flat", "logits", "probabilities"} <= set(cache.scales) and all(s > 0 for s in cache.scales.values())
    assert result.conversion["deepstream"]["int8_calib_file"]["tensors"] == len(cache.scales)
    assert "INT8" in (out / deepstream.README_FILE).read_text()


def test_deepstream_refuses_the_int8_search(tmp_path, fer_csv):
    path, _ = tiny_onnx(tmp_path)
    config = ExportConfig.build("deepstream", "int8", calib_size=16, calib_floor=1, max_drop=0.01)
    with pytest.raises(ExportError, match="--max-drop does not apply to --target deepstream"):
        run_export(path, config, tmp_path / "out", data=fer_csv)
    assert not (tmp_path / "out").exists()


def _tiny_checkpoint(folder):
    """A seeded 32 px test_efficientnet checkpoint (no dropout) in ``folder``."""
    import torch

    from edgefer.models import create_model, save_checkpoint, spec_for

    torch.manual_seed(0)
    model = create_model("test_efficientnet", drop_rate=0.0, drop_path_rate=0.0).eval()
    save_checkpoint(folder, model, spec_for(model, 32, arch="test_efficientnet"),
                    {"drop_rate": 0.0, "drop_path_rate": 0.0})
    return folder


@needs_torch
def test_deepstream_from_a_checkpoint_via_cli(tmp_path):
    from edgefer.cli import main

    ckpt = _tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "ds"
    run = CliRunner().invoke(main, ["export", "--model", str(ckpt), "--target", "deepstream", "--fp16",
                                    "--batch", "1,4,8", "--exporter", "legacy", "--out", str(out)])
    assert run.exit_code == 0, run.output
    config = _key_file(out / deepstream.CONFIG_FILE)["property"]
    assert config["network-mode"] == "2" and config["batch-size"] == "8" and config["infer-dims"] == "1;32;32"
    assert (out / deepstream.MODEL_FILE).is_file()


# ---- Triton ----------------------------------------------------------------------------------------------


def _parse(path):
    """config.pbtxt through Triton's ModelConfig schema (tritonclient) and protobuf's text_format."""
    model_config = triton.schema()
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config())


@pytest.fixture(scope="module")
def triton_export(tmp_path_factory, fer_csv):
    folder = tmp_path_factory.mktemp("triton")
    path, spec = tiny_onnx(folder)
    out = folder / "triton-fp32"
    result = run_export(path, ExportConfig.build("triton", "fp32"), out, data=fer_csv)
    return out, result, spec


@needs_openvino
def test_triton_repository_layout_and_engine_command(triton_export):
    out, result, spec = triton_export
    repo = out / triton.REPOSITORY
    assert sorted(p.name for p in repo.iterdir()) == ["edgefer_onnxruntime", "edgefer_openvino"]
    assert (repo / "edgefer_onnxruntime" / "1" / "model.onnx").is_file()
    assert (repo / "edgefer_openvino" / "1" / "model.xml").is_file()
    assert (repo / "edgefer_openvino" / "1" / "model.bin").is_file()
    pending = out / triton.PENDING / "edgefer_tensorrt"
    assert (pending / "config.pbtxt").is_file() and not (pending / "1" / "model.plan").exists()
    script = (out / triton.BUILD_SCRIPT).read_text()
    assert "trtexec --onnx=model_repository/edgefer_onnxruntime/1/model.onnx" in script
    assert "--saveEngine=tensorrt_pending/edgefer_tensorrt/1/model.plan" in script
    assert "edgefer build-engine" in script and "mv tensorrt_pending/edgefer_tensorrt model_repository/" in script
    assert result.tensorrt is not None and not result.tensorrt.built
    for folder in (repo / "edgefer_onnxruntime", repo / "edgefer_openvino", pending):
        assert (folder / "labels.txt").read_text().splitlines() == list(FER2013_LABELS)
    assert result.model == "model.xml" and result.checks["exported"]["top1_agreement"] == 1.0
    assert "tritonserver --model-repository" in (out / triton.README_FILE).read_text()


@needs_openvino
@needs_tritonclient
def test_every_triton_config_parses_with_tritons_schema(triton_export):
    out, result, spec = triton_export
    configs = sorted(out.rglob("config.pbtxt"))
    assert len(configs) == 3
    kinds = {}
    for path in configs:
        config = _parse(path)
        assert config.name == path.parent.name
        assert config.max_batch_size == 32 and config.HasField("dynamic_batching")
        assert [tuple(i.dims) for i in config.input] == [(1, SIZE, SIZE)] and config.input[0].name == "input"
        assert config.output[0].label_filename == "labels.txt" and tuple(config.output[0].dims) == (7,)
        embedded = ModelSpec.from_json(config.parameters[METADATA_KEY].string_value)
        assert (embedded.labels, embedded.mean, embedded.std, embedded.input_size, embedded.output) == \
            (spec.labels, spec.mean, spec.std, spec.input_size, spec.output)
        kinds[path.parent.name] = (config.backend or config.platform, config.instance_group[0].kind)
    group = triton.schema().DESCRIPTOR.fields_by_name["instance_group"].message_type.enum_types_by_name["Kind"]
    assert {name: (backend, group.values_by_number[kind].name) for name, (backend, kind) in kinds.items()} == {
        "edgefer_onnxruntime": ("onnxruntime", "KIND_AUTO"), "edgefer_openvino": ("openvino", "KIND_CPU"),
        "edgefer_tensorrt": ("tensorrt_plan", "KIND_GPU")}
    assert all(m["schema_checked"] for m in result.conversion["triton"]["models"].values())


@needs_openvino
@needs_tritonclient
def test_triton_fixed_batch_and_fp16(tmp_path):
    path, spec = tiny_onnx(tmp_path, batch=1)
    out = tmp_path / "t16"
    run_export(path, ExportConfig.build("triton", "fp16"), out)
    config = _parse(out / triton.REPOSITORY / "edgefer_openvino" / "config.pbtxt")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert tuple(config.input[0].dims) == (1, 1, SIZE, SIZE) and tuple(config.output[0].dims) == (1, 7)
    assert "--fp16" in (out / triton.BUILD_SCRIPT).read_text() and "--batch 1,1,1" in (
        out / triton.BUILD_SCRIPT).read_text()
    assert json.loads((out / "export.json").read_text())["model"] == "model.fp16.xml"


def test_triton_config_text_is_schema_valid_without_an_export():
    spec = ModelSpec(input_size=SIZE, labels=('say "hi"', "back\\slash", "ünï"))
    text = triton.config_pbtxt("m", "onnxruntime", spec, "input", "logits", 8)
    if triton.schema() is None:
        pytest.skip("tritonclient not installed (pip install 'edgefer[triton]')")
    parsed = triton.validate(text)
    assert ModelSpec.from_json(parsed.parameters[METADATA_KEY].string_value).labels == spec.labels
    with pytest.raises(ExportError, match="not a valid Triton model configuration"):
        triton.validate(text.replace("max_batch_size", "max_batch"))


def test_triton_int8_is_refused_in_one_line(tmp_path):
    from edgefer.cli import main

    path, _ = tiny_onnx(tmp_path)
    run = CliRunner().invoke(main, ["export", "--model", str(path), "--target", "triton", "--int8",
                                    "--out", str(tmp_path / "x")])
    assert run.exit_code == 2
    assert "--target triton does not support int8" in run.output


# ---- from a bring-your-own ONNX with a sidecar, and Triton from a checkpoint --------------------------------


def _foreign_onnx(folder):
    """tiny_onnx without edgefer metadata (a classifier from elsewhere) and its spec as a JSON sidecar, with labels
    and normalisation of its own."""
    import onnx

    path, _ = tiny_onnx(folder, name="foreign")
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(path))
    spec = ModelSpec(labels=("anger", "disgust", "fear", "joy", "sadness", "surprise", "calm"), input_size=SIZE,
                     channels=1, mean=(0.43,), std=(0.27,), color_order="gray")
    sidecar = folder / "foreign.spec.json"
    sidecar.write_text(spec.to_json(), encoding="utf-8")
    return path, sidecar, spec


def test_deepstream_from_a_bring_your_own_onnx_with_a_sidecar_via_cli(tmp_path):
    from edgefer.cli import main

    path, sidecar, spec = _foreign_onnx(tmp_path)
    out = tmp_path / "ds"
    run = CliRunner().invoke(main, ["export", "--model", str(path), "--sidecar", str(sidecar), "--target",
                                    "deepstream", "--out", str(out)])
    assert run.exit_code == 0, run.output
    config = _key_file(out / deepstream.CONFIG_FILE)["property"]
    assert float(config["offsets"]) == pytest.approx(255 * 0.43) and config["model-color-format"] == "2"
    assert float(config["net-scale-factor"]) == pytest.approx(1 / (255 * 0.27))
    assert (out / "labels.txt").read_text().strip() == ";".join(spec.labels)
    from edgefer.runtime import EmotionRecognizer

    with EmotionRecognizer.open(out / deepstream.MODEL_FILE) as recognizer:  # the bundle's graph carries the spec
        assert recognizer.spec.labels == spec.labels and recognizer.spec.output == "probabilities"
        probs = recognizer.run(np.random.default_rng(0).normal(0, 1, (3, 1, SIZE, SIZE)).astype(np.float32))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


@needs_openvino
@needs_tritonclient
def test_triton_from_a_bring_your_own_onnx_with_a_sidecar_via_cli(tmp_path):
    from edgefer.cli import main

    path, sidecar, spec = _foreign_onnx(tmp_path)
    out = tmp_path / "triton"
    run = CliRunner().invoke(main, ["export", "--model", str(path), "--sidecar", str(sidecar), "--target", "triton",
                                    "--batch", "1,4,16", "--out", str(out)])
    assert run.exit_code == 0, run.output
    configs = sorted(out.rglob("config.pbtxt"))
    assert [p.parent.name for p in configs] == ["edgefer_onnxruntime", "edgefer_openvino", "edgefer_tensorrt"]
    for config_path in configs:
        config = _parse(config_path)
        assert config.max_batch_size == 16 and config.input[0].name == "input"
        assert ModelSpec.from_json(config.parameters[METADATA_KEY].string_value).labels == spec.labels
        assert (config_path.parent / "labels.txt").read_text().splitlines() == list(spec.labels)


@needs_torch
@needs_openvino
@needs_tritonclient
def test_triton_from_a_checkpoint_via_cli(tmp_path):
    from edgefer.cli import main

    ckpt = _tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "triton"
    run = CliRunner().invoke(main, ["export", "--model", str(ckpt), "--target", "triton", "--batch", "1,8,64",
                                    "--exporter", "legacy", "--out", str(out)])
    assert run.exit_code == 0, run.output
    configs = sorted(out.rglob("config.pbtxt"))
    assert len(configs) == 3
    for config_path in configs:
        config = _parse(config_path)
        assert config.max_batch_size == 64 and tuple(config.input[0].dims) == (1, 32, 32)
        assert ModelSpec.from_json(config.parameters[METADATA_KEY].string_value).arch == "test_efficientnet"
    repo = out / triton.REPOSITORY
    assert (repo / "edgefer_onnxruntime" / "1" / "model.onnx").is_file()
    assert (repo / "edgefer_openvino" / "1" / "model.xml").is_file()
