"""OpenVINO on the CPU, two studies of how edgefer's OpenVINO backend should run a model.

    .venv/bin/python benchmarks/openvino_study.py batches --size 112 --threads 2 --out /tmp/ov_batches_112.json
    .venv/bin/python benchmarks/openvino_study.py settings --size 112 --repeats 3 --round 1 --out runs/ov_settings_112.json
    .venv/bin/python benchmarks/openvino_study.py settings --size 112 --repeats 3 --round 2 --out runs/ov_settings_112_r2.json

Both build tf_efficientnetv2_s (random init, 1-channel stem, 7 classes), export ONNX (legacy exporter, dynamic
batch) and quantize an OpenVINO INT8 copy with NNCF on random calibration inputs (timing only: the weights'
values do not change the work done); each variant is measured ``--repeats`` times, interleaved, and the median
is reported (the cores are shared; single runs are noisy).

``batches``: static shapes compiled per batch size vs padding to a few static sizes, and the LATENCY vs
THROUGHPUT settings for batch > 1. Per precision and batch size, on models reshaped to a static batch (never a
dynamic one: OpenVINO 2026.4.1 crashes on some CPUs running a dynamic-batch INT8 IR): compile time of the static
model; ms per batch with PERFORMANCE_HINT=LATENCY (one request) and THROUGHPUT (one request); THROUGHPUT with
the batch split over the compiled model's streams (one static request per stream, run together through an
AsyncInferQueue). Padding costs are read off the table: a batch of 3 padded to 4 costs the static batch-4 time.

``settings``: one-at-a-time experiments with OpenVINO / ONNX Runtime settings for batch-1 INT8 latency (NNCF
performance preset; round 2 also mixed), each variant timed at batch 1 (and 32) through
``edgefer.bench.timing.measure``; round 1 changes one setting at a time from the defaults, round 2 varies
round 1's best.

Produces: no RESULTS.md section; docs/runtime.md, "OpenVINO batches" (``batches``) and docs/bench.md,
"OpenVINO settings for batch-1 INT8 latency" (``settings``).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import common
import numpy as np


def export_onnx(size: int, work: Path, seed: int | None = None) -> tuple[object, Path]:
    """Random-init tf_efficientnetv2_s and its ONNX (legacy exporter, dynamic batch)."""
    import torch

    from edgefer.models import create_model

    if seed is not None:
        torch.manual_seed(seed)
    model = create_model("tf_efficientnetv2_s", num_classes=7, in_chans=1).eval()
    onnx_path = work / "model.onnx"
    torch.onnx.export(model, torch.zeros(1, 1, size, size), str(onnx_path), dynamo=False, opset_version=18,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return model, onnx_path


def quantize(ov_model, size: int, images: int, **options):
    """NNCF INT8 of an OpenVINO model on ``images`` random calibration inputs (seed 0)."""
    import nncf

    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 1, size, size)).astype(np.float32) for _ in range(images)]
    return nncf.quantize(ov_model, nncf.Dataset(calib), subset_size=images, **options)


# ------------------------------------------------------------------------------------------------ batches


def build_batches(size: int, work: Path) -> tuple[Path, Path]:
    import openvino as ov

    _, onnx_path = export_onnx(size, work, seed=0)
    fp32 = ov.convert_model(str(onnx_path))
    ov.save_model(fp32, str(work / "fp32.xml"), compress_to_fp16=False)
    ov.save_model(quantize(fp32, size, 16, fast_bias_correction=True), str(work / "int8.xml"))
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


def batches(args) -> None:
    import openvino as ov

    core = ov.Core()
    work = Path(tempfile.mkdtemp(prefix="ovbatch-"))
    paths = dict(zip(("fp32", "int8"), build_batches(args.size, work)))
    results = {"openvino_device": f"{core.get_property('CPU', 'FULL_DEVICE_NAME')}, {args.threads} threads",
               "rows": []}
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
        common.write_result(args.out, results, args)




# ------------------------------------------------------------------------------------------------ settings


def quantize_settings(onnx_path: Path, size: int, work: Path, preset: str = "performance") -> Path:
    import nncf
    import openvino as ov

    presets = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    out = work / f"int8-{preset}.xml"
    ov.save_model(quantize(ov.convert_model(str(onnx_path)), size, 64, preset=presets[preset]), str(out))
    return out


def settings(args) -> None:
    import openvino as ov
    import torch

    from edgefer.bench.timing import measure

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="ovset-"))
    model, onnx_path = export_onnx(args.size, work)
    int8_xml = quantize_settings(onnx_path, args.size, work)
    mixed_xml = quantize_settings(onnx_path, args.size, work, preset="mixed") if args.round == 2 else None
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
        common.write_result(args.out, summary, args)




def main(argv=None) -> None:
    ap = common.parser(__doc__)
    studies = ap.add_subparsers(dest="study", required=True)
    for name, text in (("batches", "static batch sizes, padding, LATENCY vs THROUGHPUT"),
                       ("settings", "OpenVINO / ONNX Runtime settings for batch-1 INT8 latency")):
        sub = studies.add_parser(name, help=text, description=text)
        sub.add_argument("--size", type=int, default=112, help="input size in pixels (default: 112)")
        sub.add_argument("--threads", type=int, default=2, help="inference threads (default: 2)")
        sub.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every variant")
        sub.add_argument("--out", type=Path, help="where the result JSON goes (default: printed only)")
        if name == "batches":
            sub.add_argument("--batches", default="1,2,3,4,8,16,32")
            sub.add_argument("--budget", type=float, default=1.0, help="seconds per measurement")
        else:
            sub.add_argument("--iters", type=int, default=60)
            sub.add_argument("--round", type=int, default=1, choices=(1, 2),
                             help="1: one setting at a time from the defaults; 2: variations on round 1's best")
    args = common.parse(ap, argv, __file__)
    (batches if args.study == "batches" else settings)(args)


if __name__ == "__main__":
    main()
