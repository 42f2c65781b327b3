"""``edgefer data synth`` and ``edgefer data inspect``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click

from ..bounds import SEED_MAX
from ..data.synth import SYNTH_CSV_NAME, synth_csv_path
from .options import exist_ok_option, number, printable, printable_strings, single_line, verbosity_options

MAX_SYNTH = 1_000_000  # images: ~2.3 GB of pixels in memory, ~9 GB of CSV


@click.group()
def data():
    """FER2013 data: make synthetic data, inspect a data set."""


@data.command()
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help=f"FILE (any name with a suffix, e.g. faces.csv), or a directory (gets {SYNTH_CSV_NAME}).")
@click.option("--n", "n", default=3000, show_default=True, type=number(int, min=1, max=MAX_SYNTH),
              help="Number of images.")
@click.option("--seed", default=0, show_default=True, type=number(int, min=0, max=SEED_MAX),
              help="Random seed, 0 to 2**32-1 (same seed, same bytes).")
@exist_ok_option
@verbosity_options
def synth(out: Path, n: int, seed: int, exist_ok: bool):
    """Write N procedural SYNTHETIC faces as a FER2013 CSV (emotion,pixels,Usage) plus a
    <csv>.synthetic.json marker, so every report made from it says "synthetic"."""
    from ..data import synthesize, write_fer_csv
    from ..fileio import check_output

    path = check_output(synth_csv_path(out), "file", exist_ok, "--out")
    dataset = synthesize(n, seed)
    write_fer_csv(path, dataset, provenance={"n": n, "seed": seed})
    usage = Counter(dataset.usage.tolist())
    click.echo(f"wrote {printable(path)} ({n} synthetic images, seed {seed}; "
               + ", ".join(f"{name} {usage[name]}" for name in ("Training", "PublicTest", "PrivateTest")) + ")")


@data.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--skip-bad", is_flag=True, help="Skip bad rows/files and count them instead of stopping.")
@click.option("--val-fraction", default=0.1, show_default=True, type=number(min=0, max=1, max_open=True),
              help="Validation share carved from the training data (stratified).")
@click.option("--seed", default=0, show_default=True, type=number(int, min=0, max=SEED_MAX),
              help="Seed of the train/val split.")
@click.option("--manifest", type=click.Path(path_type=Path), help="Also write the split manifest (JSON) here.")
@exist_ok_option
@verbosity_options
def inspect(path: Path, as_json: bool, skip_bad: bool, val_fraction: float, seed: int, manifest: Path | None,
            exist_ok: bool):
    """Per-split per-class counts, train class weights, image stats and bad rows of a FER2013 CSV or
    image-folder data set (splits as training uses them: train/val carved with --val-fraction/--seed)."""
    from ..data import inspect_report, prepare_splits
    from ..fileio import check_output

    if manifest:
        check_output(manifest, "file", exist_ok, "--manifest")
    splits = prepare_splits(path, val_fraction=val_fraction, seed=seed, skip_bad=skip_bad)
    if manifest:
        splits.save_manifest(manifest)
    report = printable_strings(inspect_report(splits))  # file names that are not UTF-8 shown with \\xNN
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
    else:
        click.echo(_format_report(report))


def _format_report(report: dict) -> str:
    from ..spec import FER2013_LABELS

    tag = "  [SYNTHETIC DATA]" if report["synthetic"] else ""
    lines = [f"{report['source']} ({report['format']}){tag}", f"fingerprint {report['fingerprint']}",
             f"val split: {report['val_from']}, val fraction {report['val_fraction']}, seed {report['seed']}; "
             "class weights from train"]
    if report.get("test_split"):
        lines.append(f"test splits: {report['test_split']}")
    lines.append("")
    names = list(report["splits"])
    lines.append(f"{'class':<10}" + "".join(f"{n:>14}" for n in names) + f"{'w_inverse':>11}{'w_effective':>13}")
    weights = report["class_weights"]
    for i, label in enumerate(FER2013_LABELS):
        row = "".join(f"{report['splits'][n]['class_counts'][label]:>14}" for n in names)
        lines.append(f"{label:<10}{row}{weights['inverse'][i]:>11.3f}{weights['effective'][i]:>13.3f}")
    lines.append(f"{'total':<10}" + "".join(f"{report['splits'][n]['n']:>14}" for n in names))
    stats = (f"{report['splits'][n]['mean']:.1f}/{report['splits'][n]['std']:.1f}" for n in names)
    lines.append(f"{'mean/std':<10}" + "".join(f"{s:>14}" for s in stats))
    lines.append("")
    bad = report["bad"]
    lines.append(f"bad rows/files skipped: {bad['skipped']}")
    for entry in bad["entries"][:20]:
        lines.append(single_line(f"  {entry['file']} {entry['where']}: {entry['reason']}"))
    if bad["skipped"] > 20:
        lines.append(f"  ... {bad['skipped'] - 20} more (see --json)")
    return "\n".join(lines)
