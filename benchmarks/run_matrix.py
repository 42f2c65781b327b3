"""The standard bench matrix: input 48 / 112 / 224 px x batch 1 and 32, every backend x precision, on the
embedded SYNTHETIC data, with timm tf_efficientnetv2_s.

    .venv/bin/python benchmarks/run_matrix.py --out runs/matrix            # train briefly, then bench each size
    .venv/bin/python benchmarks/run_matrix.py --out runs/matrix --sizes 112 --duration 2

Model: tf_efficientnetv2_s, 1-channel stem, 7 classes, random init, then trained briefly (``--train-steps``
optimizer steps of ``edgefer train`` at ``--train-size`` px, class-weighted CE) on the synthetic data so
that predictions are not degenerate and INT8 fidelity means something. The same weights are benchmarked
at every input size (a copy of the checkpoint whose spec has that ``input_size``): at sizes other than
``--train-size`` accuracy is that of a model evaluated off its training resolution; latency does not
depend on the weights. ``--train-steps 0`` benchmarks the random init instead (say so when reporting).

Each size runs ``edgefer bench`` in its own process (so peak RSS is per run), writing ``OUT/<size>px/``;
then ``OUT/matrix.json`` and ``OUT/matrix.md`` collect the tables and where each goal stands.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from edgefer.fileio import write_json, write_text

ROOT = Path(__file__).resolve().parent.parent
EDGEFER = [str(Path(sys.executable).with_name("edgefer"))]  # the console script of this interpreter's venv


def synthetic_data(out: Path, n: int, seed: int) -> Path:
    from edgefer.data import synthesize, write_fer_csv

    path = out / "fer2013_synthetic.csv"
    if not path.is_file():
        write_fer_csv(path, synthesize(n, seed=seed), provenance={"n": n, "seed": seed, "by": "run_matrix.py"})
    return path


def train(data: Path, out: Path, steps: int, size: int, threads: int) -> Path:
    """A briefly trained checkpoint (``edgefer train``), or the random init when ``steps`` is 0."""
    run = out / f"train-{size}px-{steps}steps"
    if (run / "model.json").is_file():
        return run
    if steps == 0:
        from edgefer.models import create_model, save_checkpoint, spec_for

        model = create_model("tf_efficientnetv2_s").eval()
        return save_checkpoint(run, model, spec_for(model, size, arch="tf_efficientnetv2_s"), {},
                               note="random init (run_matrix.py --train-steps 0)")
    cmd = [*EDGEFER, "train", "--data", str(data), "--out", str(run), "--img-size", str(size), "--max-steps",
           str(steps), "--batch-size", "32", "--threads", str(threads), "--patience", "100", "--seed", "0"]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return run


def at_size(checkpoint: Path, size: int, out: Path) -> Path:
    """A checkpoint directory with the same weights whose spec says ``input_size=size``."""
    meta = json.loads((checkpoint / "model.json").read_text())
    if meta["spec"]["input_size"] == size:
        return checkpoint
    target = out / f"{checkpoint.name}-at-{size}px"
    target.mkdir(parents=True, exist_ok=True)
    weights = target / "best.safetensors"
    if not weights.exists():
        weights.symlink_to((checkpoint / "best.safetensors").resolve())
    trained_at = meta["spec"]["input_size"]
    meta["spec"]["input_size"] = size
    meta["note"] = f"weights trained at {trained_at} px; spec set to {size} px by benchmarks/run_matrix.py"
    write_json(target / "model.json", meta)
    return target


def bench(checkpoint: Path, data: Path, out: Path, args) -> dict:
    cmd = [*EDGEFER, "bench", "--model", str(checkpoint), "--data", str(data), "--out", str(out), "--batch",
           args.batches, "--threads", str(args.threads), "--duration", str(args.duration), "--iters",
           str(args.iters), "--warmup", str(args.warmup)]
    if args.targets:
        cmd += ["--targets", args.targets]
    print("+", " ".join(cmd), flush=True)
    started = time.time()
    subprocess.run(cmd, check=True)
    report = json.loads((out / "bench.json").read_text())
    report["matrix_wall_s"] = round(time.time() - started, 1)
    report["matrix_command"] = " ".join(cmd)
    return report


def markdown(reports: dict[int, dict], train_note: str) -> str:
    from edgefer.bench.env import describe
    from edgefer.bench.report import table_rows

    first = next(iter(reports.values()))
    lines = [
        "**SYNTHETIC data** (procedurally drawn faces from `edgefer data synth`, not FER2013).",
        "",
        f"- Machine: {describe(first['environment'])}, {first['settings']['threads']} threads",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in first["environment"]["libraries"].items() if v),
        f"- Model: tf_efficientnetv2_s, 1-channel stem, 7 classes; {train_note}",
        f"- Data: `{first['data']['path']}`, split `{first['data']['split']}` ({first['data']['n']} images)",
        "",
    ]
    for size, rep in reports.items():
        header, cells = table_rows(rep)
        load = rep["environment"].get("load_average") or [float("nan")]
        lines += [f"### {size} px", "", f"`{rep['matrix_command']}` ({rep['matrix_wall_s']} s; load average "
                  f"{load[0]:.1f} on 2 cores when it started)", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
        lines += ["", "| goal | value | met |", "|---|---|---|"]
        for g in rep["goals"]:
            value = "not measured" if g["value"] is None else (
                f"{g['value']:.2%}" if g["unit"] == "fraction" else f"{g['value']:.2f} {g['unit']}")
            lines.append(f"| {g['goal']} | {value} ({g['row']}) | "
                         f"{ {True: 'yes', False: '**no**', None: '–'}[g['met']] } |")
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/matrix")
    ap.add_argument("--sizes", default="48,112,224")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measurement (budget)")
    ap.add_argument("--iters", type=int, default=300, help="runs per measurement (budget)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--targets", default="", help="passed to edgefer bench --targets (default: all rows)")
    ap.add_argument("--n", type=int, default=3000, help="synthetic images to generate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-steps", type=int, default=120, help="0: benchmark the random init")
    ap.add_argument("--train-size", type=int, default=112)
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = synthetic_data(out, args.n, args.seed)
    checkpoint = train(data, out, args.train_steps, args.train_size, args.threads)
    train_note = ("random init, not trained (--train-steps 0)" if args.train_steps == 0 else
                  f"random init trained {args.train_steps} steps (batch 32) at {args.train_size} px on the "
                  f"synthetic train split; the same weights are used at every size")
    reports = {}
    for size in (int(s) for s in args.sizes.split(",")):
        reports[size] = bench(at_size(checkpoint, size, out), data, out / f"{size}px", args)
    write_json(out / "matrix.json", {"train": train_note, "args": vars(args),
                                      "reports": {str(k): v for k, v in reports.items()}})
    write_text(out / "matrix.md", markdown(reports, train_note))
    print(f"matrix: {out / 'matrix.md'}")


if __name__ == "__main__":
    main()
