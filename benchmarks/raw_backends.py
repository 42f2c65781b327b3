"""The inference libraries driven by hand, without edgefer's runtime: the floor edgefer's own rows are compared
against (``run_matrix.py --raw``).

On the models one ``edgefer bench`` run exported (``<size>px/models/``): PyTorch eager (``inference_mode``,
``torch.set_num_threads``), ``onnxruntime.InferenceSession`` (ORT_ENABLE_ALL, ``intra_op_num_threads``),
OpenVINO ``compile_model`` with a static batch per measurement (LATENCY hint, ``INFERENCE_NUM_THREADS``; FP32
with ``INFERENCE_PRECISION_HINT=f32``), and ONNX Runtime INT8 graphs made here from the same FP32 ONNX and the
bench run's calibration bundle (its first 128 images: these graphs are timed, not scored): ``quantize_static``
with its defaults (QDQ, per-channel: the raw baseline's recipe) and ``edgefer.export.ort_int8`` (QDQ and
QOperator). Each measurement is timed with the bench's stopwatch (``edgefer.bench.timing.measure``: warm-up,
then runs until an iteration or time budget) on random input, and records the load average when it started.

Produces: no section of its own: a module of ``run_matrix.py --raw`` and ``ab_latency.py`` (the "raw library by
hand" columns of RESULTS.md, "Performance at 112 px, 2 threads, quiet machine" and "The speed goals at 48 and
224 px").
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

RAW_CALIB_IMAGES = 128
# raw row key -> (label, the edgefer bench row it corresponds to, or None)
RAW_ROWS = {
    "raw-pytorch-fp32": ("PyTorch eager FP32 (by hand)", "pytorch-fp32"),
    "raw-ort-fp32": ("ONNX Runtime FP32 (by hand)", "onnxruntime-fp32"),
    "raw-ort-int8-static": ("ONNX Runtime INT8, quantize_static QDQ defaults (by hand)", None),
    "raw-ort-int8-qdq": ("ONNX Runtime INT8, edgefer ort_int8 QDQ (by hand)", None),
    "raw-ort-int8-qoperator": ("ONNX Runtime INT8, edgefer ort_int8 QOperator (by hand)", None),
    "raw-openvino-fp32": ("OpenVINO FP32, f32 forced (by hand)", "openvino-fp32"),
    "raw-openvino-int8": ("OpenVINO INT8 (by hand)", "openvino-int8"),
}


def measure_raw(size_dir: Path, checkpoint: Path, data: Path, threads: int, batches: tuple[int, ...],
                budget: dict) -> list[dict]:
    """One dict per raw row: key, label, edgefer_row, status, reason, b1 (timing), throughput{batch: timing}."""
    models = size_dir / "models"
    fp32_onnx = models / "onnx-fp32" / "model.onnx"
    rows = []
    makers = {
        "raw-pytorch-fp32": lambda: torch_runner(checkpoint, threads),
        "raw-ort-fp32": lambda: ort_runner(fp32_onnx, threads),
        "raw-ort-int8-static": lambda: ort_runner(_ort_int8(models, fp32_onnx, data, "static"), threads),
        "raw-ort-int8-qdq": lambda: ort_runner(_ort_int8(models, fp32_onnx, data, "qdq"), threads),
        "raw-ort-int8-qoperator": lambda: ort_runner(_ort_int8(models, fp32_onnx, data, "qoperator"), threads),
        "raw-openvino-fp32": lambda: openvino_runner(models / "openvino-fp32" / "model.xml", threads, "f32"),
        "raw-openvino-int8": lambda: openvino_runner(models / "openvino-int8" / "model.int8.xml", threads, None),
    }
    for key, make in makers.items():
        label, edgefer_row = RAW_ROWS[key]
        row = {"key": key, "label": label, "edgefer_row": edgefer_row, "status": "ok", "reason": None}
        print(f"raw: {label} ...", flush=True)
        try:
            run, size = make()
            row["b1"], row["throughput"] = _time(run, size, batches, budget)
        except Exception as exc:  # noqa: BLE001 - a raw row that cannot run keeps its place with the error
            row.update(status="failed", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        rows.append(row)
    return rows


def _time(run, size: int, batches, budget) -> tuple[dict, dict]:
    from edgefer.bench.timing import measure

    rng = np.random.default_rng(0)
    out = {}
    for b in sorted(set(batches) | {1}):
        x = rng.standard_normal((b, 1, size, size)).astype(np.float32)
        load = round(os.getloadavg()[0], 2)
        warmup = budget["warmup"] if b == 1 else max(1, budget["warmup"] // 5)
        timing = measure(lambda x=x: run(x), batch=b, warmup=warmup, iters=budget["iters"], duration=budget["duration"])
        out[str(b)] = {**timing, "load_average_1min": load}
    return out["1"], out


def torch_runner(checkpoint: Path, threads: int):
    import torch

    from edgefer.export.source import open_source

    torch.set_num_threads(threads)
    source = open_source(checkpoint)
    model = source.torch_model.eval()

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return run, source.spec.input_size


def ort_runner(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    size = next(d for d in reversed(session.get_inputs()[0].shape) if isinstance(d, int))
    return (lambda x: session.run(None, {name: x})[0]), size


def openvino_runner(xml: Path, threads: int, precision: str | None):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(xml))
    size = model.inputs[0].get_partial_shape()[-1].get_length()
    compiled: dict[int, object] = {}

    def run(x):
        b = x.shape[0]
        if b not in compiled:  # one static-batch compilation per batch size, as a user driving OpenVINO would
            static = model.clone()
            static.reshape([b, *x.shape[1:]])
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
            if precision:
                config["INFERENCE_PRECISION_HINT"] = precision
            compiled[b] = core.compile_model(static, "CPU", config).create_infer_request()
        return compiled[b].infer({0: x})[0]

    return run, size


def _ort_int8(models: Path, fp32_onnx: Path, data: Path, kind: str) -> Path:
    """An ONNX Runtime INT8 graph of the FP32 model, calibrated on the bench run's bundle (made once)."""
    out = models / "raw" / f"ort-int8-{kind}.onnx"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    calib = _calibration(models, data)
    if kind == "static":
        _quantize_static_defaults(fp32_onnx, out, calib)
    else:
        from edgefer.export.ort_int8 import OrtInt8Config, quantize_for_ort_cpu

        quantize_for_ort_cpu(fp32_onnx, out, calib, OrtInt8Config(format=kind))
    return out


def _calibration(models: Path, data: Path, size: int = RAW_CALIB_IMAGES):
    """The bench run's calibration bundle, cut to its first ``size`` images: these graphs are timed, not
    scored, and the values of the ranges do not change the work."""
    from edgefer.export.calibration import CalibrationSet, from_data

    calib = None
    for bundle in sorted(models.glob("*-int8/calibration")):
        try:
            calib = CalibrationSet.load(bundle)
            break
        except Exception:  # noqa: BLE001 - an unreadable bundle: draw the same stratified set again
            continue
    calib = calib or from_data(data)
    return CalibrationSet(calib.images[:size], calib.labels[:size], calib.ids[:size], dict(calib.manifest))


def _quantize_static_defaults(fp32_onnx: Path, out: Path, calib) -> None:
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgefer.spec import METADATA_KEY, ModelSpec

    proto = onnx.load(str(fp32_onnx), load_external_data=False)
    spec = ModelSpec.from_json(next(p.value for p in proto.metadata_props if p.key == METADATA_KEY))
    name = proto.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib.batches(spec, 32))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: x}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_onnx), str(prepared))
        start = time.perf_counter()
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
        print(f"raw: quantize_static {time.perf_counter() - start:.1f} s", flush=True)
