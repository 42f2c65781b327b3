"""What the torch-free runtime costs on top of the inference runtime itself.

1. cold start: ``import edgefer.runtime`` + ``EmotionRecognizer.open`` in a fresh interpreter (median of runs);
2. batch-1 overhead: ``recognizer.predict(crop)`` (numpy preprocessing + softmax + wrapper) against the raw
   backend call (``InferenceSession.run`` / ``InferRequest.infer``) on the same prepared input, interleaved (alternating which goes first).

    .venv/bin/python benchmarks/runtime_overhead.py --arch tf_efficientnetv2_s --size 112 --threads 2
    .venv/bin/python benchmarks/runtime_overhead.py --arch tf_efficientnetv2_s --size 48 --threads 2

Models (random init) are exported once into --work (default /tmp/edgefer-bench, out of git); this
export step needs torch + timm, the measurements do not. Results: JSON at --out (default in --work).

Produces: RESULTS.md, section "ONNX Runtime INT8 at 112 px: edgefer's runtime vs the same session called by
hand"; docs/runtime.md, "Performance" (cold start, batch-1 overhead).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common
import numpy as np

# wall seconds, CPU seconds of the process (all threads; on a busy machine closer to what an idle one needs);
# the model path and thread count are filled in by cold_start
COLD_START = """
import sys, time
t0, c0 = time.perf_counter(), time.process_time()
import edgefer.runtime
rec = edgefer.runtime.EmotionRecognizer.open({path!r}, threads={threads:d})
print(time.perf_counter() - t0, time.process_time() - c0, "torch" in sys.modules)
"""


def export_models(arch: str, size: int, work_dir: Path) -> tuple[Path, Path]:
    """Random-init ``arch`` (gray, 7 classes) exported to ONNX (dynamic batch) and OpenVINO IR by edgefer's own
    exporter, spec embedded."""
    onnx_path, xml_path = work_dir / f"{arch}_{size}.onnx", work_dir / f"{arch}_{size}.xml"
    if onnx_path.is_file() and xml_path.is_file():
        return onnx_path, xml_path
    import torch

    from edgefer.export.onnx import save_onnx, torch_to_onnx
    from edgefer.export.openvino import to_ir
    from edgefer.models import create_model, spec_for

    torch.manual_seed(0)
    model = create_model(arch, num_classes=7, in_chans=1).eval()
    spec = spec_for(model, size, arch=arch)
    proto, _ = torch_to_onnx(model, spec)
    save_onnx(proto, onnx_path, spec)
    to_ir(onnx_path, xml_path, spec)
    return onnx_path, xml_path


def cold_start(path: Path, threads: int, runs: int) -> dict:
    times, cpu = [], []
    for _ in range(runs):
        code = COLD_START.format(path=str(path), threads=threads)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        assert out[2] == "False", "torch was imported"
        times.append(float(out[0]))
        cpu.append(float(out[1]))
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "cpu_median_s": statistics.median(cpu), "runs": runs}


def raw_call(rec):
    """The backend's own inference call, bypassing edgefer (same session / compiled model)."""
    backend = rec.backend
    if backend.name == "onnxruntime":
        session, feed = backend._session, backend.input_info.name
        return lambda x: session.run(None, {feed: x})[0]
    request = backend.compiled_model.create_infer_request()
    return lambda x: request.infer({0: x}, share_inputs=True)[0]


def overhead(path: Path, threads: int, iters: int, warmup: int) -> dict:
    from edgefer.preprocess import prepare
    from edgefer.runtime import EmotionRecognizer

    rec = EmotionRecognizer.open(path, threads=threads)
    crop = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)  # a FER2013-sized gray crop
    x = prepare(crop, rec.spec, color="gray")
    raw = raw_call(rec)
    assert np.allclose(raw(x), rec.predict(crop, color="gray", return_logits=True).logits, atol=1e-4)
    t_raw, t_predict, t_prepare = [], [], []
    # control: the raw call after 100 us of idling, about what predict spends before it reaches the runtime
    calls = {"raw": lambda: raw(x), "predict": lambda: rec.predict(crop, color="gray"),
             "control": lambda: (time.sleep(1e-4), raw(x)),
             "prepare": lambda: prepare(crop, rec.spec, color="gray", out=x)}
    t_control = []
    for i in range(warmup + iters):
        seconds = {}
        order = ("raw", "predict", "control") if i % 2 else ("control", "predict", "raw")  # ABBA order
        for name in (*order, "prepare"):
            t0 = time.perf_counter()
            calls[name]()
            seconds[name] = time.perf_counter() - t0
        if i >= warmup:
            t_raw.append(seconds["raw"])
            t_predict.append(seconds["predict"])
            t_control.append(seconds["control"])
            t_prepare.append(seconds["prepare"])
    raw_ms, predict_ms = statistics.median(t_raw) * 1e3, statistics.median(t_predict) * 1e3
    wrapper_us = wrapper_cost(rec, crop, iters) * 1e6
    return {"raw_median_ms": raw_ms, "predict_median_ms": predict_ms, "ratio_median": predict_ms / raw_ms,
            "ratio_mean": statistics.fmean(t_predict) / statistics.fmean(t_raw),
            "control_median_ms": statistics.median(t_control) * 1e3,
            "control_ratio_median": statistics.median(t_control) * 1e3 / raw_ms,
            "prepare_median_us": statistics.median(t_prepare) * 1e6, "wrapper_median_us": wrapper_us,
            "ratio_from_wrapper_cost": 1 + wrapper_us / (raw_ms * 1e3), "iters": iters,
            "precision": rec.backend.precision}


def wrapper_cost(rec, crop, iters: int) -> float:
    """Median seconds ``predict`` spends outside the inference runtime: the backend's inference is swapped for
    a stub returning fixed logits, so load on the machine hardly moves this number (unlike the ratio above)."""
    backend = rec.backend
    logits = rec.predict(crop, color="gray", return_logits=True).logits
    infer = backend._infer
    backend._infer = lambda x: logits.copy()
    try:
        times = []
        for _ in range(iters * 3):
            t0 = time.perf_counter()
            rec.predict(crop, color="gray")
            times.append(time.perf_counter() - t0)
    finally:
        backend._infer = infer
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = common.parser(__doc__, size=112, threads=2, out=None, work=Path("/tmp/edgefer-bench"))
    parser.add_argument("--arch", default="tf_efficientnetv2_s")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--model", type=Path, action="append", default=[],
                        help="measure this exported model (.onnx / .xml) instead of the random-init exports; "
                             "repeatable (e.g. the ONNX Runtime CPU INT8 graph of `edgefer export --target onnx --int8`)")
    args = common.parse(parser, argv, __file__)

    if args.model:
        models = [(path.name, path) for path in args.model]
    else:
        onnx_path, xml_path = export_models(args.arch, args.size, args.work)
        models = [("onnxruntime", onnx_path), ("openvino", xml_path)]
    result = {**common.provenance(args), "arch": args.arch, "size": args.size, "threads": args.threads,
              "loadavg_before": os.getloadavg(), "models": {name: str(path) for name, path in models}, "backends": {}}
    for name, path in models:
        result["backends"][name] = {"cold_start": cold_start(path, args.threads, args.cold_runs),
                                    "batch1": overhead(path, args.threads, args.iters, args.warmup)}
    result["loadavg_after"] = os.getloadavg()
    out = args.out or args.work / f"runtime_overhead_{args.arch}_{args.size}.json"
    common.write_result(out, result, args)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
