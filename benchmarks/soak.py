"""Soak test: many predictions through one EmotionRecognizer, resident memory sampled along the way.

    .venv/bin/python benchmarks/soak.py --n 100000                       # test_efficientnet, 48 px, ONNX Runtime
    .venv/bin/python benchmarks/soak.py --model fer.xml --n 100000 --batch 1 --threads 2

Without --model, a random-init ``--arch`` at ``--size`` px is exported once into --work (needs torch;
the soak itself runs in a child process that never imports it). Inputs cycle through 64 random uint8 crops
of varying sizes, gray and BGR, so the preprocessing caches and buffers are exercised. Prints and writes
JSON: RSS after warm-up and at the end, growth, throughput.

Produces: no RESULTS.md section; docs/runtime.md, "Performance" (the soak test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import common
import numpy as np


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; ru_maxrss peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def soak(model: Path, n: int, batch: int, threads: int | None, warmup: int, samples: int) -> dict:
    from edgefer.runtime import EmotionRecognizer

    rec = EmotionRecognizer.open(model, threads=threads)
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 256, (s, s, 3) if i % 2 else (s, s), dtype=np.uint8)
            for i, s in enumerate(rng.integers(40, 96, 64))]
    batches = [pool[i : i + batch] for i in range(0, len(pool) - batch + 1)]
    for i in range(warmup):
        rec.predict(batches[i % len(batches)])
    start_rss, trace = rss_mb(), []
    every = max(n // samples, 1)
    t0 = time.perf_counter()
    for i in range(n):
        faces = batches[i % len(batches)]
        rec.predict(faces if batch > 1 else faces[0])
        if (i + 1) % every == 0:
            trace.append([i + 1, round(rss_mb(), 2)])
    seconds = time.perf_counter() - t0
    end_rss = rss_mb()
    return {"model": str(model), "backend": rec.backend.name, "n": n, "batch": batch, "threads": threads,
            "warmup": warmup, "rss_after_warmup_mb": round(start_rss, 2), "rss_end_mb": round(end_rss, 2),
            "rss_growth_mb": round(end_rss - start_rss, 2), "rss_max_mb": max(r for _, r in trace),
            "seconds": round(seconds, 1), "predictions_per_s": round(n / seconds, 1), "rss_trace": trace,
            "torch_imported": "torch" in sys.modules}


def main(argv=None) -> None:
    parser = common.parser(__doc__, size=48, threads=None, out=None, work=Path("/tmp/edgefer-bench"))
    parser.add_argument("--model", type=Path, help=".onnx / .xml / .engine (default: export --arch at --size)")
    parser.add_argument("--arch", default="test_efficientnet")
    parser.add_argument("--format", choices=["onnx", "xml"], default="onnx", help="which export to soak")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=20, help="RSS samples over the run")
    args = common.parse(parser, argv, __file__)
    if args.model is None:  # export in this process (torch), soak in a fresh one (no torch)
        from runtime_overhead import export_models

        onnx_path, xml_path = export_models(args.arch, args.size, args.work)
        model = onnx_path if args.format == "onnx" else xml_path
        sys.exit(subprocess.call([sys.executable, __file__, "--model", str(model), *common.argv_or_sys(argv)]))
    result = soak(args.model, args.n, args.batch, args.threads, args.warmup, args.samples)
    result["loadavg"] = os.getloadavg()
    out = args.out or args.work / f"soak_{args.model.stem}_{args.model.suffix[1:]}_n{args.n}.json"
    common.write_result(out, result, args)
    print(json.dumps({k: v for k, v in result.items() if k != "rss_trace"}, indent=2))
    print("rss trace (prediction, MiB):", result["rss_trace"])


if __name__ == "__main__":
    main()
