"""Interleaved batch-1 latency of several models on a shared machine: one call of each model per round, rounds
until a time budget, median per model. Load from other processes then hits every model alike, so the ratios
hold up where back-to-back measurements (minutes apart, at different load) do not.

    .venv/bin/python benchmarks/ab_latency.py runs/prof/112px/models/onnx-fp32/model.onnx \\
        runs/prof/112px/models/raw/ort-int8-qdq.onnx runs/prof/112px/models/openvino-int8/model.int8.xml \\
        --checkpoint runs/prof/init-bn-recal-112px --seconds 120 --threads 2

The first model is the reference of the ratios. ``.onnx``: onnxruntime.InferenceSession (ORT_ENABLE_ALL);
``.xml``: OpenVINO, static batch 1, LATENCY hint (FP32 IRs with INFERENCE_PRECISION_HINT=f32 unless
``--ov-default-precision``); ``--checkpoint``: PyTorch eager on the edgefer checkpoint. Prints a markdown table
and writes it with the raw samples to ``--out`` (JSON).

Produces: RESULTS.md, "Performance at 112 px ... (loaded machine)" is retired; its interleaved tables now live in
git history only. Current use: docs/bench.md ("Where the time goes") and RESULTS.md, "Where the time goes at
112 px: the profile" (the interleaved ONNX Runtime ratios).

Produces: no RESULTS.md section; docs/bench.md, "NNCF choices and OpenVINO's INT8 kernels" (the interleaved
batch-1 latencies, ``results/nncf-study/ab-latency-112.json``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import common
import numpy as np


def main(argv=None):
    ap = common.parser(__doc__, threads=2, out=Path("runs/ab_latency.json"))
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--checkpoint", type=Path, help="also PyTorch eager on this edgefer checkpoint")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--ov-default-precision", action="store_true")
    args = common.parse(ap, argv, __file__)

    from raw_backends import openvino_runner, ort_runner, torch_runner

    runners = {}
    for path in args.models:
        if path.suffix == ".xml":
            precision = None if args.ov_default_precision or "int8" in path.name else "f32"
            runners[f"OpenVINO {path.parent.name}/{path.name}"] = openvino_runner(path, args.threads, precision)
        else:
            runners[f"ONNX Runtime {path.parent.name}/{path.name}"] = ort_runner(path, args.threads)
    if args.checkpoint:
        runners["PyTorch eager FP32"] = torch_runner(args.checkpoint, args.threads)
    x = {size: np.random.default_rng(0).standard_normal((1, 1, size, size)).astype(np.float32)
         for size in {s for _, s in runners.values()}}
    for run, size in runners.values():
        for _ in range(args.warmup):
            run(x[size])
    samples = {name: [] for name in runners}
    loads = [os.getloadavg()[0]]
    end = time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        for name, (run, size) in runners.items():
            t0 = time.perf_counter_ns()
            run(x[size])
            samples[name].append((time.perf_counter_ns() - t0) / 1e6)
    loads.append(os.getloadavg()[0])
    p50 = {name: float(np.median(v)) for name, v in samples.items()}
    ref = next(iter(p50))
    lines = [f"Interleaved batch 1, {args.threads} threads, {len(samples[ref])} rounds in {args.seconds:.0f} s, "
             f"load average {loads[0]:.1f} -> {loads[1]:.1f}; ratio = reference p50 / model p50 "
             f"(reference: {ref})", "", "| model | p50 ms | p10 ms | ratio |", "|---|---|---|---|"]
    for name, v in samples.items():
        lines.append(f"| {name} | {p50[name]:.2f} | {np.percentile(v, 10):.2f} | {p50[ref] / p50[name]:.2f}x |")
    text = "\n".join(lines)
    print(text)
    common.write_result(args.out, {"load_average": loads, "p50_ms": p50, "samples_ms": samples, "markdown": text},
                        args)


if __name__ == "__main__":
    main()
