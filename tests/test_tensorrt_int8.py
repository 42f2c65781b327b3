"""TensorRT 10 implicit INT8: the calibration cache format, the cache-only calibrator (against a fake
``tensorrt`` built on the runtime tests' fake), the build-engine checks and commands, and the DLA report."""

from __future__ import annotations

import struct
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner

from edgefer.cli import main
from edgefer.errors import ExportError
from edgefer.export import trt_cache
from edgefer.export.tensorrt import EngineOptions, EngineWarning, build_engine, implicit_int8_commands
from edgefer.spec import ModelSpec, embed_in_onnx
from tests.test_runtime_tensorrt import fake_tensorrt

SPEC = ModelSpec(input_size=16)
# A cache as TensorRT 10.3 writes it (header, then "<tensor>: <big-endian float32 scale in hex>"); 3c010204 is
# the scale 1/127 (amax 1.0), 3f800000 is 1.0 (amax 127).
TRT_103_CACHE = "TRT-100300-EntropyCalibration2\ninput: 3c010204\n/conv/Conv_output_0: 3f800000\n"


def test_cache_matches_tensorrt_text_format(tmp_path):
    path = trt_cache.write_cache(tmp_path / "m.calib", {"input": 1.0, "/conv/Conv_output_0": 127.0})
    assert path.read_text() == TRT_103_CACHE
    cache = trt_cache.read_cache(path)
    assert cache.header == "TRT-100300-EntropyCalibration2" and cache.amax("input") == pytest.approx(1.0)
    assert cache.scales["input"] == struct.unpack(">f", bytes.fromhex("3c010204"))[0]


def test_cache_round_trip_keeps_float32_scales(tmp_path):
    amax = {f"t{i}": float(v) for i, v in enumerate(np.random.default_rng(0).uniform(1e-3, 50, 40))}
    amax["name:with: colons"] = 3.0  # TensorFlow-style names: the scale is after the last ": "
    amax["always-zero"] = 0.0
    cache = trt_cache.read_cache(trt_cache.write_cache(tmp_path / "c.calib", amax, "8.6.2", "MinMaxCalibration"))
    assert cache.version == 8602 and cache.algorithm == "MinMaxCalibration" and list(cache.scales) == list(amax)
    for name, value in amax.items():
        expected = np.float32(max(value / 127.0, trt_cache.MIN_SCALE))
        assert np.float32(cache.scales[name]) == expected
    assert trt_cache.parse_cache(cache.to_text()) == cache


@pytest.mark.parametrize("version, number", [("10.3.0", 100300), ("10.3.0.30", 100300), ("8.6.2", 8602),
                                             ("7.1.3", 7103), ("11.0", 110000)])
def test_header_version_numbers(version, number):
    assert trt_cache.version_number(version) == number


@pytest.mark.parametrize("text, message", [
    ("", "line 1 '' is not a TensorRT cache header"),
    ("TRT-100300-Entropy\n", "line 1 'TRT-100300-Entropy' is not a TensorRT cache header"),
    ("TRT-100300-EntropyCalibration2\ninput 3c010204\n", "line 2 'input 3c010204' is not '<tensor>: <8 hex"),
    ("TRT-100300-EntropyCalibration2\ninput: 3c0102\n", "line 2 'input: 3c0102' is not"),
])
def test_bad_caches_name_the_line(text, message):
    with pytest.raises(ExportError, match="m.calib: " + message.replace("(", r"\(")):
        trt_cache.parse_cache(text, "m.calib")


def test_cache_rejects_non_finite_ranges(tmp_path):
    with pytest.raises(ExportError, match="tensor 'x': activation range nan is not finite"):
        trt_cache.write_cache(tmp_path / "x.calib", {"x": float("nan")})
    assert not (tmp_path / "x.calib").exists()


def test_retarget_and_names():
    cache = trt_cache.retarget(trt_cache.parse_cache(TRT_103_CACHE), "10.8.0")
    assert cache.to_text().splitlines()[0] == "TRT-100800-EntropyCalibration2"
    assert cache.to_text().splitlines()[1:] == TRT_103_CACHE.splitlines()[1:]
    assert trt_cache.cache_path_for("out/model.int8.qdq.onnx").name == "model.int8.calib"


# --- the build with a fake tensorrt -------------------------------------------------------------------------


def _graph(path, qdq: bool = False):
    """A tiny FP32 (or Q/DQ) conv graph with the spec embedded."""
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 1, 3, 3], np.ones(36, np.float32))
    nodes, conv_in, inits = [], "input", [w]
    if qdq:
        inits += [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]),
                  helper.make_tensor("z", TensorProto.INT8, [], [0])]
        nodes += [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        conv_in = "dq"
    nodes.append(helper.make_node("Conv", [conv_in, "w"], ["logits"], name="conv"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    embed_in_onnx(proto, SPEC)
    onnx.save(proto, str(path))
    return path


def fake_builder_tensorrt(version: str):
    """The runtime tests' fake tensorrt plus the builder API build_engine uses; the builder reads the
    calibrator's cache as TensorRT does (and asks for batches only when there is none)."""
    trt = fake_tensorrt([])
    trt.__version__ = version
    trt.Logger.WARNING = 2
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16", INT8="int8", GPU_FALLBACK="gpu_fallback")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.DeviceType = types.SimpleNamespace(DLA="dla", GPU="gpu")
    trt.built = []

    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass

    class Config:
        def __init__(self):
            self.flags, self.int8_calibrator, self.calibration_profile = set(), None, None
            self.default_device_type, self.DLA_core = "gpu", None

        def set_memory_pool_limit(self, pool, size):
            self.workspace = size

        def set_flag(self, flag):
            self.flags.add(flag)

        def add_optimization_profile(self, profile):
            self.profile = profile

        def set_calibration_profile(self, profile):
            self.calibration_profile = profile

        def create_timing_cache(self, data):
            return data

        def set_timing_cache(self, cache, ignore_mismatch):
            pass

    class Network:
        def get_input(self, i):
            return types.SimpleNamespace(name="input")

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return types.SimpleNamespace(set_shape=lambda name, *shapes: None)

        def build_serialized_network(self, network, config):
            calibrator, read = config.int8_calibrator, None
            if calibrator is not None:
                read = trt_cache.parse_cache(calibrator.read_calibration_cache())
                if read.version != trt_cache.version_number(trt.__version__):
                    raise AssertionError("Calibration table does not match calibrator algorithm type")
                if calibrator.get_batch(["input"]) is not None:
                    raise AssertionError("the cache-only calibrator returned data")
            trt.built.append(types.SimpleNamespace(config=config, cache=read))
            return b"FAKE-ENGINE"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            return True

    trt.IInt8EntropyCalibrator2, trt.Builder, trt.OnnxParser = IInt8EntropyCalibrator2, Builder, OnnxParser
    return trt


@pytest.fixture
def fp32_graph(tmp_path):
    pytest.importorskip("onnx")
    cache = tmp_path / "model.int8.calib"
    cache.write_text(TRT_103_CACHE)
    return types.SimpleNamespace(onnx=_graph(tmp_path / "model.onnx"), qdq=_graph(tmp_path / "q.onnx", qdq=True),
                                 cache=cache, dir=tmp_path)


def test_cache_calibrator_serves_the_cache_for_the_running_tensorrt(fp32_graph, monkeypatch):
    trt = fake_builder_tensorrt("10.8.0.43")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    options = EngineOptions(precision="int8", min_batch=1, opt_batch=1, max_batch=1, calib_cache=str(fp32_graph.cache),
                            dla_core=0, allow_gpu_fallback=False)
    info = build_engine(fp32_graph.onnx, fp32_graph.dir / "m.engine", options.validate(), spec=SPEC)
    built = trt.built[0]
    assert built.cache.header == "TRT-100800-EntropyCalibration2"  # rewritten for the TensorRT that builds
    assert built.cache.scales == trt_cache.parse_cache(TRT_103_CACHE).scales
    assert built.config.int8_calibrator.batches_requested == 1 and built.config.calibration_profile is not None
    assert built.config.flags == {"fp16", "int8"} and built.config.DLA_core == 0  # no GPU fallback asked for
    assert info["calibration"] == {"calib_cache": "model.int8.calib", "calib_cache_tensors": 2,
                                   "calibrator": "IInt8EntropyCalibrator2 (cache only)"}
    assert (fp32_graph.dir / "m.engine").read_bytes() == b"FAKE-ENGINE"


def test_tensorrt_11_and_qdq_graphs_refuse_the_cache(fp32_graph, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_builder_tensorrt("11.0.0"))
    options = EngineOptions(precision="int8", calib_cache=str(fp32_graph.cache), strongly_typed=False)
    with pytest.raises(ExportError, match=r"--calib-cache: TensorRT 11.x has no implicit INT8 \(calibration caches\)"):
        build_engine(fp32_graph.onnx, None, options, spec=SPEC)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_builder_tensorrt("10.3.0"))
    with pytest.raises(ExportError, match="q.onnx: --calib-cache is for the FP32 graph"):
        build_engine(fp32_graph.qdq, None, options, spec=SPEC)
    with pytest.raises(ExportError, match="--calib-cache needs --int8 \\(got fp16\\)"):
        EngineOptions(precision="fp16", calib_cache="x.calib").validate()


def test_int8_without_scales_warns(fp32_graph, monkeypatch):
    trt = fake_builder_tensorrt("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    with pytest.warns(EngineWarning, match="--int8 on a graph without Q/DQ nodes and without --calib-cache"):
        build_engine(fp32_graph.onnx, None, EngineOptions(precision="int8"), spec=SPEC)
    assert trt.built[-1].config.int8_calibrator is None
    result = CliRunner().invoke(main, ["build-engine", str(fp32_graph.onnx), "--int8", "--print-only"])
    assert result.exit_code == 0 and "edgefer: warning: " in result.output and "--calib-cache" in result.output


def test_build_engine_cli_prints_the_implicit_int8_commands(fp32_graph):
    result = CliRunner().invoke(main, ["build-engine", str(fp32_graph.onnx), "--calib-cache", str(fp32_graph.cache),
                                       "--dla-core", "1", "--batch", "2", "--print-only"])
    assert result.exit_code == 0, result.output
    (line,) = result.output.strip().splitlines()  # TensorRT 11 has no implicit INT8: one trtexec line
    assert line.endswith(f"--int8 --fp16 --calib={fp32_graph.cache} --useDLACore=1 --allowGPUFallback")
    assert "--maxShapes=input:2x1x16x16" in line
    commands = implicit_int8_commands("model.onnx", "model.int8.calib", "m.engine", SPEC,
                                      EngineOptions(dla_core=0, allow_gpu_fallback=False, min_batch=8, max_batch=8))
    assert commands["build_engine_command"] == ("edgefer build-engine model.onnx --out m.engine --int8 --batch 8,8,8 "
                                                "--workspace 1024 --calib-cache model.int8.calib --dla-core 0 "
                                                "--no-gpu-fallback")
    assert commands["trtexec_command"].endswith("--int8 --fp16 --calib=model.int8.calib --useDLACore=0")


# --- the DLA report -----------------------------------------------------------------------------------------


def test_dla_report_finds_what_dla_cannot_run(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from edgefer.export.dla import dla_report

    def weight(name, shape):
        return helper.make_tensor(name, TensorProto.FLOAT, shape, np.zeros(int(np.prod(shape)), np.float32))

    nodes = [
        helper.make_node("Conv", ["input", "w_ok"], ["a"], name="ok_conv", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "w_big"], ["b"], name="big_kernel", pads=[20, 20, 20, 20]),
        helper.make_node("Conv", ["b", "w_s"], ["c"], name="stride16", strides=[16, 16]),
        helper.make_node("HardSwish", ["c"], ["d"], name="hswish"),
        helper.make_node("Sigmoid", ["d"], ["e"], name="sig"),
        helper.make_node("Mul", ["d", "e"], ["f"], name="silu_mul"),
        helper.make_node("Concat", ["f", "f"], ["g"], name="cat_h", axis=2),
        helper.make_node("GlobalAveragePool", ["g"], ["logits"], name="gap"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 64, 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
                              [weight("w_ok", [8, 1, 3, 3]), weight("w_big", [8, 8, 41, 41]), weight("w_s", [8, 8, 1, 1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "g.onnx"))
    report = dla_report(tmp_path / "g.onnx")
    certain = {f.node: f.reason for f in report.unsupported}
    assert certain == {"big_kernel": "kernel [41, 41] outside [1, 32]", "stride16": "stride [16, 16] outside [1, 8]",
                       "hswish": "HardSwish is not in DLA's supported layers (runs on the GPU with --allow-gpu-fallback)",
                       "cat_h": "concatenation on axis 2 (DLA: channel axis only)"}
    assert [f.node for f in report.unchecked] == ["gap"]
    assert report.graph == ["input 'input' has a dynamic batch: DLA needs a fixed one (build with --batch N, "
                            "min = opt = max)"]
    assert dla_report(tmp_path / "g.onnx", batch=4).graph == []
    lines = report.lines()
    assert "  not on DLA: Concat x1, Conv x2, HardSwish x1" in lines
