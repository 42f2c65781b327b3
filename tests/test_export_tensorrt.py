"""TensorRT engine building: option validation and command construction run everywhere; the build itself
needs ``tensorrt`` and a GPU and skips here with the reason."""

import json
import types

import numpy as np
import pytest
from click.testing import CliRunner

from edgefer.cli import main
from edgefer.errors import ExportError
from edgefer.export.tensorrt import (
    EngineOptions,
    build_engine_command,
    detect_precision,
    engine_path_for,
    parse_batch,
    trtexec_command,
)
from edgefer.spec import ModelSpec
from tests.backends import needs_onnxruntime, needs_tensorrt, needs_torch

SPEC = ModelSpec(input_size=112)


@pytest.mark.parametrize("options, message", [
    (EngineOptions(precision="int4"), "engine precision 'int4' is not supported; use one of fp32, fp16, int8"),
    (EngineOptions(min_batch=4, opt_batch=2), "1 <= min <= opt <= max, got 4,2,32"),
    (EngineOptions(min_batch=0), "1 <= min <= opt <= max, got 0,8,32"),
    (EngineOptions(workspace_mb=0), "--workspace must be >= 1 MiB"),
    (EngineOptions(dla_core=-1), "--dla-core must be >= 0"),
    (EngineOptions(precision="fp32", dla_core=0), "DLA has no FP32 kernels"),
    (EngineOptions(dla_core=0), "--dla-core needs a fixed batch (e.g. --batch 8): DLA has no dynamic shapes, got 1,8,32"),
    (EngineOptions(precision="fp16", calib_cache="m.calib"), "--calib-cache needs --int8 (got fp16)"),
])
def test_engine_options_are_validated(options, message):
    with pytest.raises(ExportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        options.validate()


def test_parse_batch():
    assert parse_batch("1,8,32") == (1, 8, 32) and parse_batch("4") == (4, 4, 4)
    for bad in ("1,8", "a,b,c"):
        with pytest.raises(ExportError, match="expected MIN,OPT,MAX"):
            parse_batch(bad)


def test_trtexec_commands_for_tensorrt_10_and_11():
    int8 = EngineOptions(precision="int8", min_batch=4, opt_batch=4, max_batch=4, workspace_mb=512,
                         timing_cache="cache.bin", dla_core=0).validate()
    v10 = trtexec_command("m.int8.qdq.onnx", "m.int8.engine", SPEC, int8, "input", 10)
    assert v10 == ("trtexec --onnx=m.int8.qdq.onnx --saveEngine=m.int8.engine --minShapes=input:4x1x112x112 "
                   "--optShapes=input:4x1x112x112 --maxShapes=input:4x1x112x112 --memPoolSize=workspace:512M "
                   "--int8 --fp16 --timingCacheFile=cache.bin --useDLACore=0 --allowGPUFallback")
    v11 = trtexec_command("m.int8.qdq.onnx", "m.int8.engine", SPEC, int8, "input", 11)
    assert "--stronglyTyped" in v11 and "--int8" not in v11 and "--fp16" not in v11
    fp16_typed = EngineOptions(precision="fp16", strongly_typed=True)
    assert trtexec_command("a.onnx", "a.engine", SPEC, fp16_typed, "x", 10).endswith("--stronglyTyped")
    assert "--fp16" not in trtexec_command("a.onnx", "a.engine", SPEC, EngineOptions(precision="fp32"), "x", 10)
    dla = EngineOptions(precision="fp16", dla_core=1, min_batch=1, opt_batch=1, max_batch=1)
    assert build_engine_command("m.fp16.onnx", "m.fp16.engine", dla) == (
        "edgefer build-engine m.fp16.onnx --out m.fp16.engine --fp16 --batch 1,1,1 --workspace 1024 --dla-core 1")


def test_engine_names():
    assert engine_path_for("out/model.int8.qdq.onnx").name == "model.int8.engine"
    assert engine_path_for("model.fp16.onnx").name == "model.fp16.engine"
    assert engine_path_for("model.onnx").name == "model.engine"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A 16 px FP32 ONNX and its FP16 version (random weights: only graphs and commands are checked)."""
    pytest.importorskip("torch")
    from edgefer.export.onnx import save_onnx, torch_to_onnx
    from edgefer.export.qdq import to_fp16
    from edgefer.models import create_model, spec_for

    model = create_model("test_efficientnet").eval()
    spec = spec_for(model, 16)
    out = tmp_path_factory.mktemp("trt")
    proto, _ = torch_to_onnx(model, spec, "legacy")
    save_onnx(proto, out / "model.onnx", spec)
    to_fp16(out / "model.onnx", out / "model.fp16.onnx", spec)
    return out


@needs_torch
@needs_onnxruntime
def test_detect_precision_and_print_only(tiny_onnx):
    assert detect_precision(tiny_onnx / "model.onnx") == "fp32"
    assert detect_precision(tiny_onnx / "model.fp16.onnx") == "fp16"
    result = CliRunner().invoke(main, ["build-engine", str(tiny_onnx / "model.fp16.onnx"), "--print-only",
                                       "--batch", "1,2,4"])
    assert result.exit_code == 0, result.output
    v10, v11 = result.output.strip().splitlines()
    assert "--optShapes=input:2x1x16x16" in v10 and v10.endswith("--fp16") and v11.endswith("--stronglyTyped")
    assert "model.fp16.engine" in v10


@needs_torch
@needs_onnxruntime
def test_static_batch_pins_the_profile(tiny_onnx, tmp_path):
    import onnx

    from edgefer.export.tensorrt import fit_to_graph

    assert fit_to_graph(EngineOptions(), tiny_onnx / "model.onnx") == EngineOptions()  # dynamic batch: kept
    proto = onnx.load(str(tiny_onnx / "model.onnx"))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(proto, str(tmp_path / "fixed.onnx"))
    fixed = fit_to_graph(EngineOptions(), tmp_path / "fixed.onnx")
    assert (fixed.min_batch, fixed.opt_batch, fixed.max_batch) == (1, 1, 1)


@needs_torch
@needs_onnxruntime
def test_build_engine_without_tensorrt_is_one_line(tiny_onnx):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed: the missing-package path cannot be exercised")
    except ImportError:
        pass
    result = CliRunner().invoke(main, ["build-engine", str(tiny_onnx / "model.onnx"), "--fp16"])
    assert result.exit_code == 2
    assert result.output.strip() == ("edgefer: error: tensorrt is not installed (needed for building TensorRT "
                                     "engines): pip install 'edgefer[tensorrt]'")
    result = CliRunner().invoke(main, ["build-engine", str(tiny_onnx / "model.onnx"), "--fp32", "--dla-core", "0"])
    assert result.exit_code == 2 and "DLA has no FP32 kernels" in result.output


@needs_tensorrt
@needs_torch
@pytest.mark.parametrize("name, precision", [("model.onnx", "fp32"), ("model.fp16.onnx", "fp16")])
def test_build_engine_and_sidecar(tiny_onnx, tmp_path, name, precision):
    import tensorrt as trt

    from edgefer.export.tensorrt import build_engine

    cache = tmp_path / "timing.cache"
    options = EngineOptions(precision=precision, min_batch=1, opt_batch=2, max_batch=4, workspace_mb=256,
                            timing_cache=str(cache))
    engine = tmp_path / name.replace(".onnx", ".engine")
    info = build_engine(tiny_onnx / name, engine, options)
    assert engine.stat().st_size > 0 and cache.stat().st_size > 0
    sidecar = json.loads((tmp_path / (engine.name + ".json")).read_text())
    assert sidecar == json.loads(json.dumps(info))
    assert sidecar["tensorrt"] == trt.__version__ and sidecar["profile"]["max"] == [4, 1, 16, 16]
    assert sidecar["spec"]["precision"] == precision
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    assert runtime.deserialize_cuda_engine(engine.read_bytes()) is not None


# --- INT8 for TensorRT: NVIDIA's Q/DQ placement and the calibration cache ---------------------------------------


def _dq_consumers(proto) -> dict[str, int]:
    from edgefer.export.qdq import qdq_consumers

    return qdq_consumers(proto)


@pytest.fixture(scope="module")
def v2s_qdq(tmp_path_factory):
    """Random-init tf_efficientnetv2_s at 48 px quantized with the default (NVIDIA) placement on 8 images
    (export ~20 s, quantization ~30 s on 2 cores: built once)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    import onnx

    from edgefer.data import synthesize
    from edgefer.export.calibration import draw
    from edgefer.export.onnx import save_onnx, torch_to_onnx
    from edgefer.export.qdq import quantize_qdq
    from edgefer.models import create_model, spec_for

    out = tmp_path_factory.mktemp("v2s")
    model = create_model("tf_efficientnetv2_s").eval()
    spec = spec_for(model, 48)
    proto, _ = torch_to_onnx(model, spec, "legacy")
    save_onnx(proto, out / "model.onnx", spec)
    calib = draw(synthesize(60, seed=0), 8, floor=1)
    info = quantize_qdq(out / "model.onnx", calib, spec, out / "model.int8.qdq.onnx", method="minmax", batch_size=8,
                        trt_cache=out / "model.int8.calib")
    return types.SimpleNamespace(fp32=onnx.load(str(out / "model.onnx")), qdq=onnx.load(str(out / "model.int8.qdq.onnx")),
                                 info=info, cache=out / "model.int8.calib", dir=out, calib=calib, spec=spec)


@pytest.mark.slow
def test_nvidia_placement_on_tf_efficientnetv2_s(v2s_qdq):
    """Q/DQ on every Conv input (activation + per-channel weight), the classifier Gemm and the skip input of
    each residual Add; SiLU (Sigmoid, Mul), the squeeze-excite block (ReduceMean, Mul) and pooling stay in float."""
    graph = v2s_qdq.qdq.graph
    consumers = _dq_consumers(v2s_qdq.qdq)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 170 and consumers["Conv"] == 2 * len(convs)
    assert set(consumers) == {"Conv", "Gemm", "Add"} and consumers["Gemm"] == 2
    assert v2s_qdq.info["qdq_consumers"] == consumers and v2s_qdq.info["placement"] == "nvidia"
    producer = {o: n for n in graph.node for o in n.output}
    inits = {t.name for t in graph.initializer}
    residual = [n for n in graph.node if n.op_type == "Add" and any(producer.get(i) is not None and
                producer[i].op_type == "DequantizeLinear" for i in n.input)]
    kinds = [sorted(producer[i].op_type for i in add.input if i not in inits) for add in residual]
    # after a projection Conv: only the skip input is quantized, the Conv output goes straight in (TensorRT fuses
    # the Add into that Conv); after an activation (the first stage's ConvBnAct blocks): both inputs
    assert kinds.count(["Conv", "DequantizeLinear"]) == 33 and kinds.count(["DequantizeLinear"] * 2) == 2
    assert len(residual) == 35 and consumers["Add"] == 33 + 2 * 2
    # every activation Q/DQ is per-tensor symmetric; weights per-channel; biases stay FP32
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for q in (n for n in graph.node if n.op_type == "QuantizeLinear"):
        assert values[q.input[1]].size == 1 and not values[q.input[2]].any()
    assert all(values[c.input[2]].dtype == np.float32 for c in convs if len(c.input) > 2)


@needs_torch
@needs_onnxruntime
def test_weighted_placement_is_recorded_with_the_model(tiny_onnx, fer_csv, tmp_path):
    """--placement weighted through export(): Q/DQ on every Conv and Gemm input (activation + per-channel
    weight) and nothing else; the choice travels in the result and the executed precision is INT8."""
    import onnx

    from edgefer.export import ExportConfig, export
    from edgefer.export.qdq import qdq_consumers

    config = ExportConfig.build("tensorrt", "int8", calib_size=32, calib_floor=1, placement="weighted")
    result = export(tiny_onnx / "model.onnx", config, tmp_path / "out", data=fer_csv).to_json()
    convs = sum(1 for n in onnx.load(str(tiny_onnx / "model.onnx")).graph.node if n.op_type == "Conv")
    assert result["quantization"]["placement"] == "weighted"
    assert qdq_consumers(onnx.load(str(tmp_path / "out" / "model.int8.qdq.onnx"))) == {"Conv": 2 * convs, "Gemm": 2}
    assert result["checks"]["exported"]["executed_precision"] == "int8"


@pytest.mark.slow
def test_weighted_placement_on_tf_efficientnetv2_s_leaves_additions_in_float(v2s_qdq, tmp_path):
    """The 35 residual additions NVIDIA's placement quantizes (test above) get no Q/DQ; every Conv still does."""
    import onnx

    from edgefer.export.qdq import qdq_consumers, quantize_qdq

    info = quantize_qdq(v2s_qdq.dir / "model.onnx", v2s_qdq.calib, v2s_qdq.spec, tmp_path / "w.onnx",
                        method="minmax", batch_size=8, placement="weighted")
    assert qdq_consumers(onnx.load(str(tmp_path / "w.onnx"))) == info["qdq_consumers"] == {"Conv": 340, "Gemm": 2}
    assert info["placement"] == "weighted"


@pytest.mark.slow
def test_calibration_cache_names_the_fp32_graph_tensors(v2s_qdq):
    from edgefer.export.trt_cache import read_cache

    cache = read_cache(v2s_qdq.cache)
    graph = v2s_qdq.fp32.graph
    activations = {"input"} | {o for n in graph.node if n.op_type in ("Conv", "Sigmoid", "Mul", "Add", "Gemm")
                               for o in n.output}
    assert cache.header == "TRT-100300-EntropyCalibration2"
    assert activations <= set(cache.scales) and not {t.name for t in graph.initializer} & set(cache.scales)
    assert all(0 < s < 1e3 for s in cache.scales.values())
    assert v2s_qdq.info["trt_calib_cache"] == {"file": "model.int8.calib", "tensors": len(cache.scales),
                                               "tensorrt": "10.3.0"}


@needs_torch
@needs_onnxruntime
def test_tensorrt_int8_export_writes_cache_and_implicit_commands(tiny_onnx, fer_csv, tmp_path):
    from edgefer.export import ExportConfig, export

    out = tmp_path / "trt"
    config = ExportConfig.build("tensorrt", "int8", calib_size=32, calib_floor=1)
    result = export(tiny_onnx / "model.onnx", config, out, data=fer_csv).to_json()
    assert result["quantization"]["placement"] == "nvidia" and (out / "model.int8.calib").is_file()
    assert result["tensorrt"]["implicit_int8"] == {
        "calib_cache": "model.int8.calib",
        "build_engine_command": f"edgefer build-engine {out}/model.onnx --out {out}/model.int8.implicit.engine "
                                f"--int8 --batch 1,8,32 --workspace 1024 --calib-cache {out}/model.int8.calib",
        "trtexec_command": f"trtexec --onnx={out}/model.onnx --saveEngine={out}/model.int8.implicit.engine "
                           "--minShapes=input:1x1x16x16 --optShapes=input:8x1x16x16 --maxShapes=input:32x1x16x16 "
                           f"--memPoolSize=workspace:1024M --int8 --fp16 --calib={out}/model.int8.calib"}
    assert {"model.onnx", "model.int8.calib"} <= {f["path"] for f in result["files"]}


@needs_torch
@needs_onnxruntime
def test_dla_report_on_test_efficientnet(tiny_onnx):
    from edgefer.export.dla import dla_report

    report = dla_report(tiny_onnx / "model.onnx", batch=1)
    # SiLU (Sigmoid + Mul), the convolutions and the squeeze-excite Mul all fit DLA's published limits
    assert report.unsupported == [] and report.graph == []
    assert {f.op_type for f in report.unchecked} == {"GlobalAveragePool", "ReduceMean", "Flatten", "Gemm"}
    assert "dynamic batch" in dla_report(tiny_onnx / "model.onnx").graph[0]
