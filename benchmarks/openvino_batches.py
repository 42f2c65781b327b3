"""How the OpenVINO backend should run batches: static shapes compiled per batch size vs padding to a few
static sizes, and the LATENCY vs THROUGHPUT settings for batch > 1.

    .venv/bin/python benchmarks/openvino_batches.py --size 112 --threads 2 --out /tmp/ov_batches_112.json

Builds tf_efficientnetv2_s (random init, 1-channel stem, 7 classes), exports ONNX (legacy exporter, dynamic
batch), converts to OpenVINO FP32 and quantizes an INT8 copy with NNCF on random calibration inputs (timing
only: weight values do not change the work done). Then, per precision and batch size, on models reshaped to a
static batch (never a dynamic one: OpenVINO 2026.4.1 crashes on some CPUs running a dynamic-batch INT8 IR):
- compile time of the static model;
- ms per batch with PERFORMANCE_HINT=LATENCY (one request) and THROUGHPUT (one request);
- THROUGHPUT with the batch split over the compiled model's streams (one static request per stream, run
  together through an AsyncInferQueue);
each the median of interleaved repeats (the cores are shared; single runs are noisy). Padding costs are read
off the table: a batch of 3 padded to 4 costs the static batch-4 time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def build(size: int, work: Path) -> tuple[Path, Path]:
    import nncf
    import openvino as ov
    import torch

    from edgefer.models import create_model

    torch.manual_seed(0)
    model = create_model("tf_efficientnetv2_s", num_classes=7, in_chans=1).eval()
    onnx_path = work / "model.onnx"
    torch.onnx.export(model, torch.zeros(1, 1, size, size), str(onnx_path), dynamo=False, opset_version=18,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    fp32 = ov.convert_model(str(onnx_path))
    ov.save_model(fp32, str(work / "fp32.xml"), compress_to_fp16=False)
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 1, size, size)).astype(np.float32) for _ in range(16)]
    int8 = nncf.quantize(fp32, nncf.Dataset(calib), subset_size=16, fast_bias_correction=True)
    ov.save_model(int8, str(work / "int8.xml"))
    return work / "fp32.xml", work / "int8.xml"


def timer(fn, budget_s: float, min_iters: int = 3) -> float:
    """Median ms of ``fn()`` over about ``budget_s`` seconds (after one warm-up call)."""
    fn()
    times, start = [], time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,2,3,4,8,16,32")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    import openvino as ov

    core = ov.Core()
    work = Path(tempfile.mkdtemp(prefix="ovbatch-"))
    paths = dict(zip(("fp32", "int8"), build(args.size, work)))
    results = {"command": "benchmarks/openvino_batches.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()
                                                                       if k != "out"),
               "machine": f"{core.get_property('CPU', 'FULL_DEVICE_NAME')}, {args.threads} threads",
               "python": platform.python_version(), "openvino": ov.__version__, "rows": []}
    threads = {"INFERENCE_NUM_THREADS": args.threads}
    for precision, path in paths.items():
        hint = {"INFERENCE_PRECISION_HINT": "f32"} if precision == "fp32" else {}
        for b in (int(v) for v in args.batches.split(",")):
            model = core.read_model(str(path))
            model.reshape([b, 1, args.size, args.size])
            x = np.random.default_rng(b).standard_normal((b, 1, args.size, args.size)).astype(np.float32)
            t0 = time.perf_counter()
            lat = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", **threads, **hint})
            compile_ms = (time.perf_counter() - t0) * 1e3
            thr = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", **threads, **hint})
            streams = thr.get_property("NUM_STREAMS")
            lat_req, thr_req = lat.create_infer_request(), thr.create_infer_request()
            variants = {"latency": lambda r=lat_req, x=x: r.infer({0: x}, share_inputs=True),
                        "throughput_one_request": lambda r=thr_req, x=x: r.infer({0: x}, share_inputs=True)}
            if b > 1 and b % streams == 0 and streams > 1:
                part = core.read_model(str(path))
                part.reshape([b // streams, 1, args.size, args.size])
                split = core.compile_model(part, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", **threads, **hint})
                queue = ov.AsyncInferQueue(split, streams)
                chunks = np.split(x, streams)

                def run_split(queue=queue, chunks=chunks):
                    for chunk in chunks:
                        queue.start_async({0: chunk}, share_inputs=True)
                    queue.wait_all()

                variants[f"throughput_split_{streams}_streams"] = run_split
            found = {name: [] for name in variants}
            for _ in range(args.repeats):
                for name, fn in variants.items():
                    found[name].append(timer(fn, args.budget))
            row = {"precision": precision, "batch": b, "compile_ms": round(compile_ms, 1), "throughput_streams": streams,
                   **{f"{name}_ms": round(statistics.median(v), 2) for name, v in found.items()}}
            print(json.dumps(row), flush=True)
            results["rows"].append(row)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
