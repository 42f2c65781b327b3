"""Bench reports: ``bench.json`` (the schema in docs/bench.md), ``bench.csv``, ``bench.md``, PNG plots
(matplotlib, Agg) and the rich table printed in the terminal."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..env import describe
from ..fileio import atomic_path, write_json, write_text
from .sanity import outlier_lines

SYNTHETIC_NOTE = "SYNTHETIC data (procedurally drawn faces, not FER2013): accuracy numbers say nothing about FER2013"


def write_reports(report: dict, out_dir: str | Path, plots: bool = True,
                  published_as: str | Path | None = None) -> dict:
    """Write every report file into ``out_dir``; return {kind: path}. bench.json is written last, with this map.
    ``published_as``: the directory ``out_dir`` will become (a staging directory is published later): the map
    names the files there."""
    out_dir = Path(out_dir)
    shown = Path(published_as) if published_as is not None else out_dir
    write_text(out_dir / "bench.csv", to_csv(report))
    files = {"csv": str(shown / "bench.csv"), "markdown": str(shown / "bench.md")}
    if plots:
        files["plots"] = {name: str(shown / Path(p).relative_to(out_dir))
                          for name, p in write_plots(report, out_dir).items()}
    files["json"] = str(shown / "bench.json")
    report["files"] = files
    write_text(out_dir / "bench.md", to_markdown(report))
    write_json(out_dir / "bench.json", report)
    return files


def _get(d, *keys):
    for k in keys:
        if d is None:
            return None
        d = d.get(k)
    return d


def flat_rows(report: dict) -> list[dict]:
    """One flat dict per row (the CSV columns)."""
    labels = _classes(report)
    batches = report["settings"]["batches"]
    out = []
    for r in report["rows"]:
        lat = r.get("latency")
        size = r.get("model_size_bytes")
        flat = {
            "key": r["key"], "label": r["label"], "backend": r["backend"], "precision": r["precision"],
            "inference_precision": r.get("inference_precision"), "device": r["device"], "status": r["status"], "reason": r["reason"] or "",
            "reference": bool(r.get("reference")),
            "accuracy": _get(r, "accuracy", "accuracy"), "macro_f1": _get(r, "accuracy", "macro_f1"),
            "delta_accuracy_points": _get(r, "vs_reference", "delta_accuracy_points"),
            "delta_macro_f1_points": _get(r, "vs_reference", "delta_macro_f1_points"),
            "agreement": _get(r, "vs_reference", "agreement"),
        }
        for name, key in (("b1", "model_b1"), ("e2e_b1", "end_to_end_b1")):
            for stat in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "runs"):
                flat[f"{name}_{stat}"] = _get(lat, key, stat)
        for b in batches:
            flat[f"throughput_b{b}_ips"] = _get(lat, "throughput", str(b), "throughput_ips")
        flat.update({
            "energy_b1_mj": _get(lat, "energy_b1", "mj_per_inference"),
            "model_size_mib": None if size is None else size / 2**20,
            "peak_rss_mib": _get(r, "memory", "peak_rss_mib"), "rss_delta_mib": _get(r, "memory", "delta_mib"),
            "export_s": r.get("export_s"), "open_s": r.get("open_s"),
        })
        for name in labels:
            flat[f"f1_{name}"] = _get(r, "accuracy", "per_class", name, "f1")
        out.append(flat)
    return out


def to_csv(report: dict) -> str:
    rows = flat_rows(report)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def _f(value, fmt: str, empty: str = "–") -> str:
    return empty if value is None else format(value, fmt)


def table_rows(report: dict, reasons_inline: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the summary table (shared by the terminal and bench.md); with ``reasons_inline``
    False a row that did not run shows only its status (the terminal lists the reasons below the table)."""
    batches = [b for b in report["settings"]["batches"] if b != 1]
    header = ["row", "status", "acc", "macro-F1", "Δ F1 pts", "agree", "b1 p50 ms", "b1 p99 ms", "e2e p50 ms",
              *[f"b{b} img/s" for b in batches], "size MiB", "peak RSS MiB"]
    cells = []
    for f in flat_rows(report):
        status = f["status"] + (" (ref)" if f["reference"] else "")
        if f["status"] != "ok":
            text = f"{status}: {f['reason']}" if reasons_inline else status
            cells.append([f["label"], text] + [""] * (len(header) - 2))
            continue
        cells.append([
            f["label"], status, _f(f["accuracy"], ".3f"), _f(f["macro_f1"], ".3f"),
            _f(f["delta_macro_f1_points"], "+.2f"), _f(f["agreement"], ".2%"), _f(f["b1_p50_ms"], ".2f"),
            _f(f["b1_p99_ms"], ".2f"), _f(f["e2e_b1_p50_ms"], ".2f"),
            *[_f(f[f"throughput_b{b}_ips"], ".0f") for b in batches],
            _f(f["model_size_mib"], ".1f"), _f(f["peak_rss_mib"], ".0f"),
        ])
    return header, cells


def _classes(report: dict) -> list[str]:
    """The classes the rows are scored over: those data and model share (matched by name), in data order."""
    match = report["data"].get("labels")
    return list(match["shared"]) if match else list(report["model"]["labels"])


def _data_lines(data: dict) -> list[str]:
    """Which images were used for what, and how the data's classes were matched onto the model's labels."""
    lines = []
    usage = data.get("images_used") or {}
    if usage.get("calibration"):
        lines.append(f"- INT8 calibration: {usage['calibration']}")
    match = data.get("labels")
    if match and match.get("scored_over") != "all classes":
        lines.append(f"- Classes matched by name; scored over the {len(match['shared'])} shared classes "
                     f"({', '.join(match['shared'])}); only in the data: {', '.join(match['data_only']) or 'none'}; "
                     f"only in the model: {', '.join(match['model_only']) or 'none'}")
    return lines


def _output_text(report: dict) -> str:
    """What the model's outputs are and how that is known: declared in its spec or detected from them."""
    out = report["model"].get("output")
    if not out:
        return ""
    return f"; outputs {out['kind']} ({out['source']}" + (f": {out['evidence']})" if out["source"] == "detected" else ")")


def to_markdown(report: dict) -> str:
    env, settings, data = report["environment"], report["settings"], report["data"]
    lines = ["# edgefer bench", ""]
    if report["synthetic"]:
        lines += [f"> **{SYNTHETIC_NOTE}**", ""]
    lines += [
        f"- Model: `{report['model']['path']}` ({report['model']['kind']}, {report['model']['arch'] or 'arch ?'}, "
        f"{report['model']['input_size']} px, {report['model']['channels']} channel(s))" + _output_text(report),
        f"- Data: `{data['path']}` split `{data['split']}`, {data['n']} images"
        + (" (SYNTHETIC)" if data["synthetic"] else ""),
        *_data_lines(data),
        f"- Machine: {describe(env)}; {settings['threads']} threads",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in env["libraries"].items() if v),
        f"- Timing: {_budget_text(settings)}",
        f"- Reference: {report['reference'] or 'none (no FP32 row could run)'}",
        f"- Command: `{' '.join(report['command'])}`",
        f"- Created: {report['created']}",
        "",
    ]
    for warning in env.get("warnings", []):
        lines.append(f"> warning: {warning}")
    lines += [f"> warning: {line}" for line in outlier_lines(report)]
    header, cells = table_rows(report)
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    lines += ["", "Δ F1 pts: macro-F1 minus the reference's, in points; agree: top-1 agreement with the reference; "
              "b1: batch-1 model call (`.run` on prepared input); e2e: `.predict` on one uint8 face (at the model's "
              "input size when the data keeps larger originals, else 48x48) incl. preprocessing; img/s: images per "
              "second at that batch size.", ""]
    lines += _per_class_markdown(report)
    lines += threshold_markdown(report)
    plots = report.get("files", {}).get("plots", {})
    if plots:
        lines += ["", "## Plots", ""] + [f"![{name}]({Path(p).name})" for name, p in plots.items()]
    return "\n".join(lines) + "\n"


def threshold_markdown(report: dict) -> list[str]:
    """bench.md's thresholds section: each threshold given with its measured value and verdict, the violations,
    notes, and the ``edgefer export --max-drop`` command for each INT8 row that missed one (``search``)."""
    lines = []
    if not report.get("thresholds"):
        return lines
    passed = report.get("gate", {}).get("passed", True)
    lines += ["", "## Thresholds (given on the command line): " + ("passed" if passed else "FAILED"), "",
              "| threshold | measured | result |", "|---|---|---|"]
    for t in report["thresholds"]:
        lines.append(f"| {t['option']} {t['limit']:g} | {threshold_value(t)} | "
                     f"{'passed' if t['passed'] else '**FAILED**'} |")
    lines += [f"- {t['option']} {t['limit']:g}: {v}" for t in report["thresholds"] for v in t["violations"]]
    lines += [f"- note ({t['option']}): {t['note']}" for t in report["thresholds"] if t.get("note")]
    commands = dict.fromkeys(c for t in report["thresholds"] for c in t.get("search", []))
    lines += [f"- search for an INT8 model within these bounds: `{c}`" for c in commands]
    return lines


def _budget_text(settings: dict) -> str:
    limits = [f"{settings['iters']} runs" if settings["iters"] else "",
              f"{settings['duration_s']} s" if settings["duration_s"] else ""]
    limits = [x for x in limits if x] or ["3 s"]
    return f"warm-up {settings['warmup']} runs, then each measurement until {' or '.join(limits)} (at least 3 runs)"


def _per_class_markdown(report: dict) -> list[str]:
    labels = _classes(report)
    ok = [r for r in report["rows"] if r["status"] == "ok"]
    if not ok:
        return []
    lines = ["", "## Per-class F1", "", "| row | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for r in ok:
        lines.append(f"| {r['label']} | " + " | ".join(
            f"{r['accuracy']['per_class'][name]['f1']:.3f}" for name in labels) + " |")
    return lines


def print_table(report: dict, console=None) -> None:
    """The summary table in the terminal (rich), plus where the reports are."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 170)  # a log file: keep one line per row
    title = "edgefer bench" + (" — SYNTHETIC data" if report["synthetic"] else "")
    table = Table(title=title, caption=describe(report["environment"]))
    header, cells = table_rows(report, reasons_inline=False)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < 2 else "right", overflow="fold")
    for row in cells:
        style = None if row[1].startswith("ok") else "dim"
        table.add_row(*row, style=style)
    console.print(table)
    for r in report["rows"]:
        if r["status"] in ("missing", "failed"):
            console.print(f"[dim]{r['label']}: {r['status']}: {r['reason']}[/dim]")
    for warning in report["environment"].get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}")
    for line in outlier_lines(report):
        console.print(f"[yellow]warning:[/yellow] {line}")
    for t in report.get("thresholds", []):
        verdict = "[green]passed[/green]" if t["passed"] else "[red]FAILED[/red]"
        console.print(f"{t['option']} {t['limit']:g} {verdict}: {threshold_value(t)}")


def threshold_value(t: dict) -> str:
    """What a threshold was judged on, e.g. ``lowest INT8 top-1 agreement 99.71 % (openvino-int8)``."""
    if t["value"] is None:
        return f"{t['measured']}: not measured"
    if t["option"] == "--fail-on-drop":
        value = f"{100 * t['value']:.2f} points"
    elif t["unit"] == "fraction":
        value = f"{t['value']:.2%}"
    else:
        value = f"{t['value']:.2f}x"
    return f"{t['measured']} {value}" + (f" ({t['row']})" if t["row"] else "")


# ------------------------------------------------------------------------------------------------ plots


def write_plots(report: dict, out_dir: Path) -> dict:
    """latency_vs_macro_f1.png, per_class_f1.png, confusion_fp32_vs_int8.png (those that have data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in report["rows"] if r["status"] == "ok"]
    written = {}
    if not ok:
        return written
    tag = " (SYNTHETIC data)" if report["synthetic"] else ""
    for name, draw in (("latency_vs_macro_f1", _pareto), ("per_class_f1", _per_class),
                       ("confusion_fp32_vs_int8", _confusions)):
        fig = draw(plt, report, ok, tag)
        if fig is None:
            continue
        path = out_dir / f"{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        written[name] = path
    return written


def _pareto(plt, report, ok, tag):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = sorted(((r["latency"]["model_b1"]["p50_ms"], r["accuracy"]["macro_f1"], r) for r in ok),
                    key=lambda p: (p[0], -p[1]))
    front, best = [], -1.0
    for lat, f1, _ in points:  # fastest first: a point is on the front if no faster row has a higher macro-F1
        if f1 > best:
            front.append((lat, f1))
            best = f1
    for lat, f1, r in points:
        ax.scatter(lat, f1, s=70, marker="*" if r.get("reference") else "o", zorder=3,
                   label=r["label"] + (" (reference)" if r.get("reference") else ""))
    ax.plot(*zip(*front), "--", color="gray", lw=1, label="Pareto front")
    ax.set_xscale("log")
    from matplotlib.ticker import FormatStrFormatter

    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="x", which="minor", labelsize=6)
    ax.set_xlabel("batch-1 latency p50 (ms, model call, log scale)")
    ax.set_ylabel(f"macro-F1 on '{report['data']['split']}'")
    ax.set_title(f"Latency vs macro-F1, {report['model']['input_size']} px, "
                 f"{report['settings']['threads']} threads{tag}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _per_class(plt, report, ok, tag):
    import numpy as np

    labels = _classes(report)
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(labels)), 4.5))
    width = 0.8 / len(ok)
    x = np.arange(len(labels))
    for i, r in enumerate(ok):
        ax.bar(x + i * width - 0.4 + width / 2, [r["accuracy"]["per_class"][n]["f1"] for n in labels], width,
               label=r["label"])
    ax.set_xticks(x, labels)
    ax.set_ylabel("F1")
    ax.set_ylim(0, 1)
    ax.set_title(f"Per-class F1 per backend{tag}", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _confusions(plt, report, ok, tag):
    import numpy as np

    ref = next((r for r in ok if r.get("reference")), None)
    int8 = [r for r in ok if r["precision"] == "int8"]
    if ref is None:
        return None
    panels = [ref, *int8]
    labels = _classes(report)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, r in zip(axes[0], panels):
        cm = np.asarray(r["accuracy"]["confusion_matrix"], float)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_title(f"{r['label']}\nmacro-F1 {r['accuracy']['macro_f1']:.3f}", fontsize=8)
    axes[0][0].set_ylabel("true")
    fig.suptitle(f"Confusion matrices: FP32 reference vs INT8{tag}", fontsize=9)
    return fig
