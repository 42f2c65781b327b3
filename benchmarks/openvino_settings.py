"""One-at-a-time experiments with OpenVINO / ONNX Runtime settings for the batch-1 INT8 latency goal.

    .venv/bin/python benchmarks/openvino_settings.py --size 112 --repeats 3 --round 1 --out runs/ov_settings_112.json
    .venv/bin/python benchmarks/openvino_settings.py --size 112 --repeats 3 --round 2 --out runs/ov_settings_112_r2.json

Builds tf_efficientnetv2_s (random init, 1-channel stem, 7 classes), exports ONNX (legacy exporter,
dynamic batch), quantizes the OpenVINO model with NNCF (performance preset; round 2 also mixed) on random
calibration inputs (timing only: the
weights' values do not change the work done), then times each setting variant at batch 1 (and 32)
through the same ``edgefer.bench.timing.measure``. Each variant is measured ``--repeats`` times,
interleaved, and the median p50 is reported — the 2 cores are shared and single runs are noisy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from edgefer.bench.timing import measure
from edgefer.fileio import write_json


def build(size: int, work: Path):
    import torch

    from edgefer.models import create_model

    model = create_model("tf_efficientnetv2_s").eval()
    onnx_path = work / "model.onnx"
    torch.onnx.export(model, torch.zeros(1, 1, size, size), str(onnx_path), dynamo=False, opset_version=18,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return model, onnx_path


def quantize_ov(onnx_path: Path, size: int, work: Path, preset: str = "performance") -> Path:
    import nncf
    import openvino as ov

    ov_model = ov.convert_model(str(onnx_path))
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 1, size, size)).astype(np.float32) for _ in range(64)]
    q = nncf.quantize(ov_model, nncf.Dataset(calib), subset_size=64,
                      preset=nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE)
    out = work / f"int8-{preset}.xml"
    ov.save_model(q, str(out))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--out", default="")
    ap.add_argument("--round", type=int, default=1, choices=(1, 2),
                    help="1: one setting at a time from the defaults; 2: variations on round 1's best")
    args = ap.parse_args()

    import openvino as ov
    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="ovset-"))
    model, onnx_path = build(args.size, work)
    int8_xml = quantize_ov(onnx_path, args.size, work)
    mixed_xml = quantize_ov(onnx_path, args.size, work, preset="mixed") if args.round == 2 else None
    core = ov.Core()
    x1 = np.random.default_rng(1).standard_normal((1, 1, args.size, args.size)).astype(np.float32)
    x32 = np.random.default_rng(2).standard_normal((32, 1, args.size, args.size)).astype(np.float32)

    def ov_variant(path, config, static=False, call="request"):
        m = core.read_model(str(path))
        if static:
            m.reshape([1, 1, args.size, args.size])
        compiled = core.compile_model(m, "CPU", config)
        req = compiled.create_infer_request()
        if call == "compiled":
            return lambda x: compiled(x)
        if call == "request-share":
            return lambda x: req.infer(x, share_inputs=True, share_outputs=True)
        return lambda x: req.infer(x)

    threads = {"INFERENCE_NUM_THREADS": args.threads}
    lat = {"PERFORMANCE_HINT": "LATENCY"}
    variants = {"torch eager fp32": lambda x: model(torch.from_numpy(x))}
    if args.round == 1:
        variants.update({
            "ov fp32 (f32 hint)": ov_variant(onnx_path, {"INFERENCE_PRECISION_HINT": "f32", **threads}),
            "ov fp32 default (bf16)": ov_variant(onnx_path, {**threads}),
            "ov int8 default, compiled(x)": ov_variant(int8_xml, {}, call="compiled"),
            "ov int8 +threads": ov_variant(int8_xml, threads),
            "ov int8 +threads +LATENCY": ov_variant(int8_xml, {**threads, **lat}),
            "ov int8 +threads +LATENCY +share": ov_variant(int8_xml, {**threads, **lat}, call="request-share"),
            "ov int8 +threads +LATENCY +f32 rest": ov_variant(int8_xml, {**threads, **lat,
                                                                          "INFERENCE_PRECISION_HINT": "f32"}),
            "ov int8 +threads +LATENCY +static b1": ov_variant(int8_xml, {**threads, **lat}, static=True),
            "ov int8 +threads +LATENCY +static b1 +share": ov_variant(int8_xml, {**threads, **lat}, static=True,
                                                                       call="request-share"),
            "ov int8 +threads +LATENCY +pinning": ov_variant(int8_xml, {**threads, **lat,
                                                                         "ENABLE_CPU_PINNING": True}),
            "ov int8 +threads +1 stream": ov_variant(int8_xml, {**threads, "NUM_STREAMS": 1}),
        })
    else:  # round 2: on top of the round-1 best (LATENCY + threads + share_inputs + static batch-1 shape)
        best = {**threads, **lat}
        variants.update({
            "ov int8 runtime settings (dynamic batch)": ov_variant(int8_xml, best, call="request-share"),
            "ov int8 best (static b1)": ov_variant(int8_xml, best, static=True, call="request-share"),
            "ov int8 best, 1 thread": ov_variant(int8_xml, {**lat, "INFERENCE_NUM_THREADS": 1}, static=True,
                                                 call="request-share"),
            "ov int8 best +f32 rest": ov_variant(int8_xml, {**best, "INFERENCE_PRECISION_HINT": "f32"},
                                                 static=True, call="request-share"),
            "ov int8 best +denormals": ov_variant(int8_xml, {**best, "CPU_DENORMALS_OPTIMIZATION": True},
                                                  static=True, call="request-share"),
            "ov int8 (mixed preset) best": ov_variant(mixed_xml, best, static=True, call="request-share"),
            "ov bf16 (fp32 IR) best": ov_variant(onnx_path, best, static=True, call="request-share"),
            "ov fp32 (f32) static b1": ov_variant(onnx_path, {**best, "INFERENCE_PRECISION_HINT": "f32"},
                                                  static=True, call="request-share"),
        })
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    variants["ort fp32"] = lambda x: sess.run(None, {"input": x})

    results = {name: {"b1_p50_ms": [], "b32_ips": []} for name in variants}
    with torch.inference_mode():
        for rep in range(args.repeats):
            for name, fn in variants.items():
                t = measure(lambda fn=fn: fn(x1), iters=args.iters, warmup=5)
                results[name]["b1_p50_ms"].append(t["p50_ms"])
                if rep == 0 and "static" not in name and "best" not in name:
                    t32 = measure(lambda fn=fn: fn(x32), iters=5, warmup=1, batch=32)
                    results[name]["b32_ips"].append(t32["throughput_ips"])
                print(f"rep {rep} {name:45s} b1 p50 {t['p50_ms']:.2f} ms", flush=True)
    from edgefer.preprocess import prepare
    from edgefer.spec import ModelSpec

    face = np.random.default_rng(3).integers(0, 256, (48, 48), dtype=np.uint8)
    spec = ModelSpec(input_size=args.size)
    pre = measure(lambda: prepare(face, spec, color="gray"), iters=500)
    ref = float(np.median(results["torch eager fp32"]["b1_p50_ms"]))
    summary = {"size": args.size, "threads": args.threads, "repeats": args.repeats, "iters": args.iters,
               "prepare_48_to_size_p50_ms": pre["p50_ms"], "variants": {}}
    print(f"\nprepare 48->{args.size} batch 1: p50 {pre['p50_ms']:.3f} ms")
    print(f"{'variant':45s} {'b1 p50 ms':>10s} {'vs torch':>9s} {'b32 img/s':>10s}")
    for name, r in results.items():
        med = float(np.median(r["b1_p50_ms"]))
        ips = float(np.median(r["b32_ips"])) if r["b32_ips"] else None
        summary["variants"][name] = {"b1_p50_ms_median": med, "b1_p50_ms_runs": r["b1_p50_ms"],
                                     "b32_ips": ips, "ratio_vs_torch": ref / med}
        print(f"{name:45s} {med:10.2f} {ref / med:8.1f}x {ips if ips else float('nan'):10.0f}")
    print(json.dumps({"versions": {"openvino": ov.__version__, "onnxruntime": ort.__version__,
                                   "torch": torch.__version__}}))
    if args.out:
        write_json(args.out, summary)


if __name__ == "__main__":
    main()
