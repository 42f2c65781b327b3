"""TensorRT engine building: option validation and command construction run everywhere; the build itself
needs ``tensorrt`` and a GPU and skips here with the reason."""

import json

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
    int8 = EngineOptions(precision="int8", min_batch=1, opt_batch=4, max_batch=16, workspace_mb=512,
                         timing_cache="cache.bin", dla_core=0)
    v10 = trtexec_command("m.int8.qdq.onnx", "m.int8.engine", SPEC, int8, "input", 10)
    assert v10 == ("trtexec --onnx=m.int8.qdq.onnx --saveEngine=m.int8.engine --minShapes=input:1x1x112x112 "
                   "--optShapes=input:4x1x112x112 --maxShapes=input:16x1x112x112 --memPoolSize=workspace:512M "
                   "--int8 --fp16 --timingCacheFile=cache.bin --useDLACore=0 --allowGPUFallback")
    v11 = trtexec_command("m.int8.qdq.onnx", "m.int8.engine", SPEC, int8, "input", 11)
    assert "--stronglyTyped" in v11 and "--int8" not in v11 and "--fp16" not in v11
    fp16_typed = EngineOptions(precision="fp16", strongly_typed=True)
    assert trtexec_command("a.onnx", "a.engine", SPEC, fp16_typed, "x", 10).endswith("--stronglyTyped")
    assert "--fp16" not in trtexec_command("a.onnx", "a.engine", SPEC, EngineOptions(precision="fp32"), "x", 10)
    assert build_engine_command("m.fp16.onnx", "m.fp16.engine", EngineOptions(precision="fp16", dla_core=1)) == (
        "edgefer build-engine m.fp16.onnx --out m.fp16.engine --fp16 --batch 1,8,32 --workspace 1024 --dla-core 1")


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
