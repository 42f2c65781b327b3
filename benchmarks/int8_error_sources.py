"""Where the INT8 error of a Q/DQ graph comes from: the same graph with the activation Q/DQ of one group of
operators removed (that group back in float) and with only that group's kept, scored against the FP32 ONNX on
the faces of one split, through ``edgefer.runtime``.

    PYTHONPATH=. python benchmarks/int8_error_sources.py --fp32 EXPORT/model.onnx \\
        --qdq EXPORT/model.int8.qdq.onnx --data FER2013_DIR --split private_test --limit 1000 \\
        --work WORK_DIR --out benchmarks/results/fer2013/error_sources.json

Groups: the stem convolution, other convolutions, depthwise convolutions, squeeze-excite convolutions, the head
convolution, the classifier, residual additions (by the node that reads the quantized tensor). Rows: ``all`` (the
graph as given), ``weights only`` (every activation Q/DQ removed; per-channel INT8 weights kept), then for each
group ``GROUP in float`` and ``only GROUP``. Each: top-1 agreement with FP32 and the mean |logit change|. The
header gives the FP32 top-1 minus top-2 logit margins of the same faces.

FER2013 may not be redistributed: the variant graphs go to --work (outside git); --out gets figures only.

Produces: RESULTS.md, section "FER2013 (real faces)": the INT8 error-sources table.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import common
import numpy as np

SHARES = (0.005, 0.01, 0.05, 0.5)


def parse_args(argv=None):
    parser = common.parser(__doc__, work=Path("runs/int8_error_sources"),
                           out=Path("benchmarks/results/fer2013/error_sources.json"))
    parser.add_argument("--fp32", type=Path, required=True, help="the FP32 ONNX the Q/DQ graph was made from")
    parser.add_argument("--qdq", type=Path, required=True, help="the INT8 Q/DQ ONNX")
    parser.add_argument("--data", type=Path, required=True, help="labelled faces (FER2013 folders or CSV)")
    parser.add_argument("--split", default="private_test")
    parser.add_argument("--limit", type=int, default=1000, help="faces drawn from the split (seeded, 0 = all)")
    return common.parse(parser, argv, __file__)


def group_of(node) -> str:
    """The operator group of a node that reads a quantized activation."""
    if node.op_type != "Conv":
        return {"Add": "residual additions", "Gemm": "classifier"}.get(node.op_type, node.op_type)
    name = node.name.lower()
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    if "conv_stem" in name:
        return "stem convolution"
    if "/se/" in name or ".se." in name:
        return "squeeze-excite convolutions"
    if "conv_head" in name:
        return "head convolution"
    return "depthwise convolutions" if group > 1 else "other convolutions"


def activation_reads(graph) -> list[tuple[str, str, str]]:
    """(float source, DQ output, reading node name) for every read of a quantized activation."""
    from edgefer.export.qdq import quantizer_of

    producer = {o: n for n in graph.node for o in n.output}
    constants = {t.name for t in graph.initializer}
    reads = []
    for node in graph.node:
        for name in node.input:
            q = quantizer_of(producer, name)
            if q is not None and q.input[0] not in constants:
                reads.append((q.input[0], name, node.name))
    return reads


def main(argv=None) -> None:
    args = parse_args(argv)
    warnings.simplefilter("ignore")
    import onnx

    from edgefer.data import prepare_splits
    from edgefer.export import check
    from edgefer.logs import QUIET, set_verbosity

    set_verbosity(QUIET)
    args.work.mkdir(parents=True, exist_ok=True)
    splits = prepare_splits(args.data, val_fraction=0.1, seed=0)
    test = splits.get(args.split)
    if test is None or not len(test):
        raise SystemExit(f"--data {args.data}: no '{args.split}' split")
    pick = np.arange(len(test.labels))
    if args.limit and args.limit < len(pick):
        pick = np.sort(np.random.default_rng(0).choice(len(pick), args.limit, replace=False))
    images = test.images[pick]
    spec = check.open_model(args.fp32).spec
    reference = check.logits(args.fp32, images, spec)
    ranked = np.sort(reference, axis=1)
    margins = np.quantile(ranked[:, -1] - ranked[:, -2], SHARES)

    proto = onnx.load(str(args.qdq))
    nodes = {n.name: n for n in proto.graph.node}
    reads = activation_reads(proto.graph)
    groups: dict[str, list] = {}
    for read in reads:
        groups.setdefault(group_of(nodes[read[2]]), []).append(read)
    print(f"{args.split}: {len(images)} faces; quantized activation reads per group: "
          f"{ {g: len(v) for g, v in groups.items()} }", flush=True)

    def score(label: str, floated: list) -> dict:
        started = time.perf_counter()
        variant = onnx.load(str(args.qdq))
        by_name = {n.name: n for n in variant.graph.node}
        for source, dq_out, reader in floated:
            node = by_name[reader]
            node.input[list(node.input).index(dq_out)] = source
        path = args.work / f"variant-{len(rows)}.onnx"
        onnx.save(variant, str(path))
        out = check.logits(path, images, spec)
        row = {"variant": label, "agreement": round(float((out.argmax(1) == reference.argmax(1)).mean()), 5),
               "mean_abs_logit_change": round(float(np.abs(out - reference).mean()), 5),
               "seconds": round(time.perf_counter() - started, 1)}
        print(f"{label}: agreement {100 * row['agreement']:.2f} %, mean |dlogit| {row['mean_abs_logit_change']:.4f}",
              flush=True)
        return row

    rows: list = []
    rows.append(score("all (the graph as given)", []))
    rows.append(score("weights only (every activation in float)", reads))
    for group, members in sorted(groups.items()):
        rows.append(score(f"{group} in float", members))
        rows.append(score(f"only {group}", [r for r in reads if r not in members]))
    common.write_result(args.out, {
        "data": f"{args.data.name}, split {args.split}", "synthetic": bool(splits.synthetic), "faces": len(images),
        "fp32": str(args.fp32), "qdq": str(args.qdq),
        "fp32_top2_margin_quantiles": {str(k): round(float(v), 4) for k, v in zip(SHARES, margins)},
        "reads_per_group": {g: len(v) for g, v in groups.items()}, "rows": rows}, args)
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
