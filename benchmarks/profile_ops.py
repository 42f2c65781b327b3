"""Where inference time goes, per op group, in OpenVINO and ONNX Runtime at batch 1 and 32.

    .venv/bin/python benchmarks/profile_ops.py --out runs/profile                       # 112 px, batch 1 and 32
    .venv/bin/python benchmarks/profile_ops.py --size 112 --batch 1 32 \\
        --backend openvino-int8 openvino-fp32 ort-fp32 ort-int8-qdq ort-int8-qoperator --threads 2

Model: random init with BatchNorm recalibrated on synthetic faces (``run_matrix.recalibrated_init``, the same
model the matrix benchmarks), exported by ``edgefer.export``; ORT INT8 graphs by
``edgefer.export.ort_int8.quantize_for_ort_cpu`` on the same stratified calibration bundle.

- OpenVINO: compiled with ``PERF_COUNT=YES`` (static batch, LATENCY hint, ``INFERENCE_NUM_THREADS``), summing
  ``InferRequest.get_profiling_info()`` over the timed runs; each executed node is mapped back to the
  original ops it fused (runtime model ``originalLayersNames``) to pick its group.
- ONNX Runtime: ``SessionOptions.enable_profiling``; the JSON trace's ``*_kernel_time`` events of the timed
  runs (warm-up runs are cut off by their ``model_run`` events), grouped by op type, shape and weight shape.

Groups: dense convolutions, depthwise convolutions, SE (squeeze-excitation: pool, the two 1x1 FC convs and
their activations, sigmoid gate, channel scale), SiLU (sigmoid x mul on feature maps), elementwise/adds
(residuals), reorders / layout and precision conversions (Reorder, Transpose, Q/DQ, Cast), other (stem pool,
classifier, reshapes). A node OpenVINO fused (conv + SiLU) is counted in the group of its heaviest op.
Profiling adds its own per-op overhead: compare ratios within one run, not absolute numbers across runs;
``uptime``'s load average is recorded with each timing (the machine may be shared).

(Named ``profile_ops.py``, not ``profile.py``: a ``profile.py`` here would shadow the standard library's
``profile`` module for every script in this folder, and torch imports it.)

Writes ``OUT/profile.json`` and ``OUT/profile.md``; also MACs per group (from the ONNX graph's shapes),
used by the roofline note in docs/bench.md.

Produces: RESULTS.md, section "Where the time goes at 112 px: the op-group profile"; docs/bench.md, "Where the
time goes: per-op profile and roofline (112 px)".
"""

from __future__ import annotations

import collections
import json
import re
import time
from pathlib import Path

import common
import numpy as np

from edgefer.fileio import write_text

GROUPS = ("conv", "depthwise", "se", "silu", "eltwise", "reorder", "other")
GROUP_LABELS = {"conv": "dense conv", "depthwise": "depthwise conv", "se": "SE (pool, FC, sigmoid, mul)",
                "silu": "SiLU", "eltwise": "elementwise / adds", "reorder": "reorders / conversions",
                "other": "other"}
BACKENDS = ("openvino-int8", "openvino-fp32", "openvino-default", "ort-fp32", "ort-int8-qdq", "ort-int8-qoperator",
            "ort-int8-qdq-conv")
_REORDER = {"Reorder", "Transpose", "QuantizeLinear", "DequantizeLinear", "Cast", "Convert", "ReorderInput",
            "ReorderOutput", "FakeQuantize", "DynamicQuantizeLinear"}
_CONV = {"Conv", "FusedConv", "QLinearConv", "NhwcFusedConv", "Convolution", "GroupConvolution", "ConvInteger",
         "BinaryConvolution"}
# QuickGelu is ORT's fusion of x * sigmoid(alpha * x): SiLU with alpha 1
_ACT = {"Sigmoid", "QLinearSigmoid", "Swish", "HSigmoid", "Mul", "QLinearMul", "Multiply", "HardSigmoid", "QuickGelu"}
_POOL = {"ReduceMean", "GlobalAveragePool", "QLinearGlobalAveragePool", "AvgPool", "AveragePool"}


# ------------------------------------------------------------------------------------------ grouping rules


def spatial(shape) -> int | None:
    """H*W of a 4-D feature map, NCHW or NHWC (ORT runs INT8 convolutions channels-last; maps are square here:
    NCHW when dims 2 and 3 match, else NHWC when dims 1 and 2 do), or of a blocked 5-D NCHWc shape; None for
    other ranks."""
    if shape is None or len(shape) not in (4, 5):
        return None
    dims = [int(d) if d is not None and int(d) > 0 else 1 for d in shape]
    if len(dims) == 5 or dims[2] == dims[3]:
        return dims[2] * dims[3]
    return dims[1] * dims[2] if dims[1] == dims[2] else dims[2] * dims[3]


def classify(op_type: str, out_shape, in_shapes, depthwise: bool) -> str:
    """The group of one op from its type, output shape, input shapes and whether it is a grouped conv."""
    hw = spatial(out_shape)
    if op_type in _REORDER:
        return "reorder"
    if op_type in _CONV:
        if hw == 1:
            return "se"  # the SE block's 1x1 FC convolutions run on a 1x1 map
        return "depthwise" if depthwise else "conv"
    if op_type in _POOL:
        return "se" if hw == 1 and not _is_head(out_shape) else "other"
    if op_type in _ACT or op_type in ("Add", "QLinearAdd", "Sub", "Eltwise", "Subgraph"):
        if hw == 1:
            return "se"
        shapes = [s for s in in_shapes if s is not None and len(s) >= 4]
        if op_type in ("Mul", "QLinearMul", "Multiply") and any(spatial(s) == 1 for s in shapes):
            return "se"  # x * gate: the SE channel scale
        if op_type in ("Add", "QLinearAdd", "Sub"):
            return "eltwise"
        return "silu"
    return "other"


def _is_head(shape) -> bool:
    return False  # the head's global pool is one op of ~31; it is counted with SE (said in the docs)


# ------------------------------------------------------------------------------------------ OpenVINO


def profile_openvino(model_path: Path, batch: int, threads: int, runs: int, warmup: int, precision: str | None,
                     size: int, channels: int) -> dict:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(model_path))
    model.reshape([batch, channels, size, size])
    original = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    config = {"PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).standard_normal((batch, channels, size, size)).astype(np.float32)
    for _ in range(warmup):
        request.infer({0: x})
    runtime = {op.get_friendly_name(): op for op in compiled.get_runtime_model().get_ordered_ops()}
    group_of: dict[str, str] = {}
    totals: dict[str, float] = collections.defaultdict(float)
    by_exec: dict[str, float] = collections.defaultdict(float)
    walls = []
    load = common.load_average()
    for _ in range(runs):
        t0 = time.perf_counter()
        request.infer({0: x})
        walls.append((time.perf_counter() - t0) * 1e3)
        for info in request.get_profiling_info():
            ms = info.real_time.total_seconds() * 1e3
            if ms <= 0:
                continue
            name = info.node_name
            if name not in group_of:
                group_of[name] = _openvino_group(info, runtime.get(name), original)
            totals[group_of[name]] += ms
            by_exec[f"{info.node_type}:{info.exec_type}"] += ms
    return _summary(totals, walls, runs, load, batch,
                    top={k: v / runs for k, v in sorted(by_exec.items(), key=lambda kv: -kv[1])[:12]})


def _openvino_group(info, runtime_op, original) -> str:
    node_type = info.node_type
    if node_type in ("Reorder", "Convert", "FakeQuantize", "Transpose"):
        return "reorder"
    if node_type in ("Input", "Parameter", "Output", "Result", "Constant"):
        return "other"
    names = []
    if runtime_op is not None:
        rt = runtime_op.get_rt_info()
        if "originalLayersNames" in rt:
            names = [n for n in str(rt["originalLayersNames"].astype(str)).split(",") if n]
    ops = [original[n] for n in names if n in original]
    if not ops:
        shape = _shape(runtime_op.get_output_partial_shape(0)) if runtime_op is not None else None
        return classify(node_type, shape, [], "dw" in info.exec_type)
    # the heaviest original op decides: a conv with fused SiLU is a conv
    priority = ("GroupConvolution", "Convolution", "MatMul", "ReduceMean", "Add", "Multiply", "Swish", "Sigmoid")
    ops.sort(key=lambda op: priority.index(op.get_type_name()) if op.get_type_name() in priority else len(priority))
    op = ops[0]
    kind = op.get_type_name()
    out_shape = _shape(op.get_output_partial_shape(0))
    in_shapes = [_shape(op.input(i).get_partial_shape()) for i in range(op.get_input_size())]
    if kind == "GroupConvolution":
        return classify("Convolution", out_shape, in_shapes, True)
    if kind == "MatMul":
        return "other"
    return classify(kind, out_shape, in_shapes, False)


def _shape(partial) -> list[int] | None:
    try:
        return [d.get_length() if d.is_static else -1 for d in partial]
    except (AttributeError, RuntimeError):
        return None


# ------------------------------------------------------------------------------------------ ONNX Runtime


def profile_onnxruntime(model_path: Path, batch: int, threads: int, runs: int, warmup: int, size: int,
                        channels: int, workdir: Path) -> tuple[dict, dict]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(workdir / f"ort-{model_path.stem}-b{batch}")
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name:
            np.random.default_rng(0).standard_normal((batch, channels, size, size)).astype(np.float32)}
    for _ in range(warmup):
        session.run(None, feed)
    walls = []
    load = common.load_average()
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feed)
        walls.append((time.perf_counter() - t0) * 1e3)
    trace = json.loads(Path(session.end_profiling()).read_text())
    grouped = grouped_convs(model_path)
    model_runs = sorted((e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"),
                        key=lambda e: e["ts"])[warmup:]
    first = model_runs[0]["ts"] if model_runs else 0
    totals: dict[str, float] = collections.defaultdict(float)
    by_op: dict[str, float] = collections.defaultdict(float)
    macs: dict[str, float] = collections.defaultdict(float)
    for event in trace:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time") or event["ts"] < first:
            continue
        args = event.get("args", {})
        op_type = args.get("op_name", "")
        ins = [_first_shape(s) for s in args.get("input_type_shape", [])]
        outs = [_first_shape(s) for s in args.get("output_type_shape", [])]
        node = re.sub(r"(_token_\d+)?_kernel_time$", "", event["name"])
        group = classify(op_type, outs[0] if outs else None, ins, node in grouped or _depthwise(op_type, ins))
        if op_type in ("Gemm", "MatMul", "QLinearMatMul", "MatMulInteger"):
            group = "other"
        ms = event["dur"] / 1e3
        totals[group] += ms
        by_op[op_type] += ms
        macs[group] += _macs(op_type, ins, outs)
    n = max(len(model_runs), 1)
    summary = _summary(totals, walls, n, load, batch,
                       top={k: v / n for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[:12]})
    return summary, {g: v / n for g, v in macs.items()}


def grouped_convs(model_path: Path) -> set[str]:
    """Names of the grouped (depthwise) convolutions in an ONNX file: ORT keeps a fused QLinearConv's name
    and reports pre-packed weights without their shape, so the graph says which convs are depthwise."""
    import onnx

    proto = onnx.load(str(model_path), load_external_data=False)
    return {n.name for n in proto.graph.node if n.op_type in ("Conv", "QLinearConv")
            and any(a.name == "group" and a.i > 1 for a in n.attribute)}


def _first_shape(entry: dict):
    return next(iter(entry.values())) if entry else None


def _weight(op_type: str, ins):
    index = 3 if op_type == "QLinearConv" else 1
    return ins[index] if len(ins) > index else None


def _depthwise(op_type: str, ins) -> bool:
    if op_type not in _CONV or not ins:
        return False
    w, x = _weight(op_type, ins), ins[0]
    if w is None or x is None or len(w) != 4 or len(x) != 4:
        return False
    return w[1] == 1 and w[0] > 1 and w[0] in (x[1], x[3])  # one input channel per group, NCHW or NHWC


def _macs(op_type: str, ins, outs) -> float:
    if op_type in _CONV and ins and outs and outs[0] is not None:
        w = _weight(op_type, ins)
        if w is not None and len(w) == 4:
            out = outs[0]
            positions = out[0] * (out[2] * out[3] if len(out) == 4 else 1)
            return float(positions * w[0] * w[1] * w[2] * w[3])
    if op_type in ("Gemm", "MatMul") and len(ins) >= 2 and ins[0] and ins[1]:
        return float(np.prod(ins[0]) * ins[1][-1])
    return 0.0


# ------------------------------------------------------------------------------------------ shared


def _summary(totals, walls, runs, load, batch, top) -> dict:
    per_run = {g: round(totals.get(g, 0.0) / runs, 4) for g in GROUPS}
    return {"batch": batch, "runs": len(walls), "wall_p50_ms": round(float(np.median(walls)), 3),
            "ops_ms": round(sum(per_run.values()), 3), "groups_ms": per_run, "top_kinds_ms":
            {k: round(v, 4) for k, v in top.items()}, "load_average": load}


def prepare_models(args, work: Path) -> tuple[dict[str, Path], object]:
    """The FP32 ONNX, the OpenVINO IRs and the ORT INT8 graphs the chosen backends need."""
    import run_matrix as matrix

    from edgefer.data import prepare_splits
    from edgefer.export import ExportConfig, export
    from edgefer.export.calibration import from_data
    from edgefer.export.openvino import to_ir
    from edgefer.export.ort_int8 import OrtInt8Config, quantize_for_ort_cpu
    from edgefer.spec import ModelSpec
    data = matrix.synthetic_data(work, 3000, 0)
    checkpoint = matrix.recalibrated_init(data, work, args.size, 256, args.threads, arch=args.arch)
    paths: dict[str, Path] = {}
    fp32 = work / f"onnx-fp32-{args.arch}-{args.size}" / "model.onnx"
    if not fp32.is_file():
        export(str(checkpoint), ExportConfig.build("onnx", "fp32", parity_atol=0.01), fp32.parent, data=str(data))
    paths["ort-fp32"] = fp32
    if any(b.startswith("openvino") for b in args.backend):
        xml = work / f"openvino-fp32-{args.arch}-{args.size}" / "model.xml"
        if not xml.is_file():  # the IR of the same FP32 ONNX (no second torch export)
            to_ir(fp32, xml, ModelSpec.from_json(onnx_spec(fp32)))
        paths["openvino-fp32"] = paths["openvino-default"] = xml
    if "openvino-int8" in args.backend:
        xml = work / f"openvino-int8-{args.arch}-{args.size}" / "model.int8.xml"
        if not xml.is_file():
            export(str(checkpoint), ExportConfig.build("openvino", "int8", parity_atol=0.01), xml.parent,
                   data=str(data))
        paths["openvino-int8"] = xml
    wanted = {"ort-int8-qdq": OrtInt8Config(format="qdq"), "ort-int8-qoperator": OrtInt8Config(format="qoperator"),
              "ort-int8-qdq-conv": OrtInt8Config(format="qdq", ops="conv")}
    calib = None
    for key, config in wanted.items():
        if key not in args.backend:
            continue
        path = work / f"{key}-{args.arch}-{args.size}.onnx"
        if not path.is_file():
            calib = calib or from_data(prepare_splits(data), 512, "stratified", 0)
            quantize_for_ort_cpu(fp32, path, calib, config)
        paths[key] = path
    return paths, checkpoint


def onnx_spec(path: Path) -> str:
    import onnx

    from edgefer.spec import METADATA_KEY

    proto = onnx.load(str(path), load_external_data=False)
    return next(p.value for p in proto.metadata_props if p.key == METADATA_KEY)


def markdown(result: dict) -> str:
    lines = [f"Command: `{result['command']}`", "",
             f"Machine: {result['machine']}; {result['threads']} threads. Load average (1/5/15 min) is recorded "
             "per row: the machine may be shared, so compare ratios within this run only.", "",
             "ms per inference by op group (sum of per-op times from the profilers; `wall` = p50 of the same "
             "profiled calls):", "",
             "| backend | batch | " + " | ".join(GROUP_LABELS[g] for g in GROUPS) + " | ops sum | wall p50 | load |",
             "|---|---|" + "---|" * (len(GROUPS) + 3)]
    for row in result["rows"]:
        cells = [f"{row['groups_ms'][g]:.2f} ({100 * row['groups_ms'][g] / max(row['ops_ms'], 1e-9):.0f} %)"
                 for g in GROUPS]
        lines.append(f"| {row['backend']} | {row['batch']} | " + " | ".join(cells)
                     + f" | {row['ops_ms']:.2f} | {row['wall_p50_ms']:.2f} | {row['load_average'][0]:.1f} |")
    if result.get("macs"):
        lines += ["", f"MACs per image by group (from the FP32 ONNX graph's shapes, batch 1): total "
                  f"{sum(result['macs'].values()) / 1e6:.1f} M", "",
                  "| group | MMAC | share |", "|---|---|---|"]
        total = sum(result["macs"].values()) or 1.0
        for g in GROUPS:
            if result["macs"].get(g):
                lines.append(f"| {GROUP_LABELS[g]} | {result['macs'][g] / 1e6:.1f} | {100 * result['macs'][g] / total:.1f} % |")
    lines += ["", "Heaviest kernels per row (ms per inference):", ""]
    for row in result["rows"]:
        tops = ", ".join(f"{k} {v:.2f}" for k, v in list(row["top_kinds_ms"].items())[:6])
        lines.append(f"- {row['backend']} b{row['batch']}: {tops}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = common.parser(__doc__, out=Path("runs/profile"), threads=2, size=112, work=None)
    ap.add_argument("--arch", default="tf_efficientnetv2_s")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--backend", nargs="+", default=["openvino-int8", "openvino-fp32", "ort-fp32", "ort-int8-qdq"],
                    choices=BACKENDS)
    ap.add_argument("--runs", type=int, default=20, help="profiled runs at batch 1 (batch > 1: a quarter, >= 3)")
    ap.add_argument("--warmup", type=int, default=5)
    args = common.parse(ap, argv, __file__)

    out = args.out
    work = args.work or out / "models"
    work.mkdir(parents=True, exist_ok=True)
    paths, _ = prepare_models(args, work)
    rows, macs = [], {}
    for backend in args.backend:
        for batch in args.batch:
            runs = args.runs if batch == 1 else max(3, args.runs // 4)
            print(f"profile {backend} batch {batch} ({runs} runs) ...", flush=True)
            if backend.startswith("openvino"):
                precision = {"openvino-fp32": "f32"}.get(backend)
                row = profile_openvino(paths[backend], batch, args.threads, runs, args.warmup, precision, args.size, 1)
            else:
                row, row_macs = profile_onnxruntime(paths[backend], batch, args.threads, runs, args.warmup, args.size,
                                                    1, work)
                if backend == "ort-fp32" and batch == 1:
                    macs = row_macs
            rows.append({"backend": backend, **row})
    result = {**common.provenance(args), "threads": args.threads, "arch": args.arch, "size": args.size,
              "groups": {g: GROUP_LABELS[g] for g in GROUPS}, "macs": macs, "rows": rows,
              "models": {k: str(v) for k, v in paths.items()}}
    common.write_result(out / "profile.json", result, args)
    write_text(out / "profile.md", markdown(result))
    print(markdown(result))
    print(f"profile: {out / 'profile.md'}")


if __name__ == "__main__":
    main()
