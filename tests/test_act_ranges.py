"""Streaming activation ranges: the same numbers as computing them on all tensors at once (and as ONNX
Runtime's calibrators), whatever the sub-batch size the memory budget imposes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper  # noqa: E402

from edgefer.errors import ExportError  # noqa: E402
from edgefer.export.act_ranges import collect_ranges, tensors_to_calibrate  # noqa: E402

RNG = np.random.default_rng(0)
W = RNG.normal(size=(4, 1, 3, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """input -> Conv -> Relu -> Add(relu, conv) -> logits, with a dynamic batch and no value_info."""
    nodes = [helper.make_node("Conv", ["input", "w"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("Add", ["relu", "conv"], ["logits"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
                          [helper.make_tensor("w", TensorProto.FLOAT, W.shape, W.ravel())])
    path = tmp_path_factory.mktemp("ranges") / "g.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def _reference(batches):
    """Every tensor of every batch, computed with numpy."""
    out = []
    for x in batches:
        pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        conv = np.zeros((len(x), 4, 8, 8), np.float32)
        for i in range(3):
            for j in range(3):
                conv += np.einsum("nhw,o->nohw", pad[:, 0, i:i + 8, j:j + 8], W[:, 0, i, j])
        relu = np.maximum(conv, 0)
        out.append({"input": x, "conv": conv, "relu": relu, "logits": relu + conv})
    return out


BATCHES = [RNG.normal(scale=s, size=(5, 1, 8, 8)).astype(np.float32) for s in (1.0, 3.0, 0.5)]


@pytest.mark.parametrize("memory_mb", [256, 0])  # 0: one image per sub-batch
def test_minmax_and_moving_average_match_numpy(graph, memory_mb, monkeypatch):
    from edgefer.export import act_ranges

    monkeypatch.setattr(act_ranges, "REDUCE_MEMORY_MB", memory_mb)
    ref = _reference(BATCHES)
    names = ["input", "conv", "relu", "logits"]
    minmax = collect_ranges(graph, BATCHES, names, method="minmax", memory_mb=memory_mb)
    for name in names:
        assert minmax.amax[name] == pytest.approx(max(np.abs(r[name]).max() for r in ref), rel=1e-6)
    moving = collect_ranges(graph, BATCHES, names, method="moving-average", memory_mb=memory_mb)
    for name in names:
        low = np.mean([r[name].min() for r in ref])
        high = np.mean([r[name].max() for r in ref])
        assert moving.amax[name] == pytest.approx(max(abs(low), abs(high)), rel=1e-6)
    assert minmax.images == moving.images == 15 and minmax.scale("conv") == minmax.amax["conv"] / 127
    # the asymmetric bounds (uint8 activations, ONNX Runtime's CPU INT8): the method's own (low, high)
    for name in names:
        assert minmax.bounds[name] == pytest.approx((min(r[name].min() for r in ref), max(r[name].max() for r in ref)),
                                                    rel=1e-6)
        assert moving.bounds[name] == pytest.approx((np.mean([r[name].min() for r in ref]),
                                                     np.mean([r[name].max() for r in ref])), rel=1e-6)


def test_ort_cache_symmetric_and_asymmetric(graph, tmp_path):
    from onnxruntime.quantization.calibrate import load_tensors_data

    ranges = collect_ranges(graph, BATCHES, ["relu", "conv"], method="minmax")
    symmetric = load_tensors_data(ranges.save_ort_cache(tmp_path / "s.json"))
    asymmetric = load_tensors_data(ranges.save_ort_cache(tmp_path / "a.json", asymmetric=True))
    assert float(symmetric["relu"].range_value[0]) == pytest.approx(-ranges.amax["relu"])
    assert float(asymmetric["relu"].range_value[0]) == pytest.approx(0.0, abs=1e-6)  # a ReLU output: low is 0
    assert float(asymmetric["conv"].range_value[1]) == pytest.approx(ranges.bounds["conv"][1])
    entropy = collect_ranges(graph, BATCHES, ["relu"], method="entropy")
    with pytest.raises(ExportError, match="asymmetric ranges need a min/max calibration method, not 'entropy'"):
        entropy.save_ort_cache(tmp_path / "e.json", asymmetric=True)


@pytest.mark.parametrize("method, rel", [("entropy", 1e-5), ("percentile", 0.02)])
def test_histogram_methods_match_onnxruntime_whatever_the_sub_batches(graph, tmp_path, method, rel):
    """Fixed-bin histograms: one image per sub-batch gives the same ranges as whole batches, and the same as
    ONNX Runtime's calibrator, which histograms all images at once (percentile: ORT bins |x| over
    [min |x|, max |x|], edgefer over [0, max |x|], hence the tolerance)."""
    from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, create_calibrator

    names = ["conv", "relu", "logits"]
    whole = collect_ranges(graph, BATCHES, names, method=method)
    split = collect_ranges(graph, BATCHES, names, method=method, memory_mb=0)
    assert split.amax == whole.amax

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(BATCHES)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    options = {"symmetric": True, "num_bins": 512 if method == "entropy" else 2048, "num_quantized_bins": 128}
    calibrator = create_calibrator(graph, None, augmented_model_path=str(tmp_path / "aug.onnx"),
                                   calibrate_method=getattr(CalibrationMethod, method.capitalize()),
                                   extra_options=options)
    calibrator.collect_data(Reader())
    ort_ranges = calibrator.compute_data()
    for name in names:
        low, high = ort_ranges[name].range_value
        assert whole.amax[name] == pytest.approx(max(abs(float(low)), abs(float(high))), rel=rel), name


def test_tensors_to_calibrate_and_errors(graph, tmp_path):
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(graph)))
    assert tensors_to_calibrate(proto) == ["input", "conv", "relu", "logits"]
    assert tensors_to_calibrate(proto, {"Relu"}) == ["conv", "relu"]
    with pytest.raises(ExportError, match="calibration set is empty"):
        collect_ranges(graph, [], ["conv"], method="minmax")
    with pytest.raises(ExportError, match="--calib-method 'mse' is not supported"):
        collect_ranges(graph, BATCHES, ["conv"], method="mse")
    cache = collect_ranges(graph, BATCHES, ["conv"], method="minmax").save_ort_cache(tmp_path / "r.json")
    from onnxruntime.quantization.calibrate import load_tensors_data

    assert float(load_tensors_data(cache)["conv"].range_value[1]) > 0
