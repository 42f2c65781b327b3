"""``edgefer info MODEL``: what a model artefact is, like ``polygraphy inspect model``.

ONNX (``.onnx``): inputs and outputs (names, shapes, dtypes), layout, the embedded spec (or a sidecar), opset,
precision (fp32 / fp16 / int8 with the Q/DQ node count), node count by op type. OpenVINO IR (``.xml``): the same
read from the IR's XML (no OpenVINO needed), precision from element types and the FakeQuantize count. TensorRT
(``.engine``/``.plan``): the sidecar spec, and the bindings when ``tensorrt`` is installed. An edgefer checkpoint
(run directory, ``model.json`` or ``best.safetensors``): architecture, spec, metrics, training settings. Every
file gets its size and sha256. The inspection itself is ``edgefer.artefacts``; this module is the command.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from ..artefacts import format_info, inspect_artefact
from ..errors import UsageError
from .options import number, printable, printable_strings, verbosity_options


@click.command()
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--top", type=number(int, min=0, max=2**31 - 1), default=10, show_default=True,
              help="How many op types to list, most frequent first (0: all).")
@click.option("--sidecar", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON spec to show when the model has none embedded (default: <model>.json).")
@click.option("--dla-report", "dla_batch", type=number(int, min=1, max=65536), default=None, metavar="BATCH",
              help="ONNX only: also list the layers a Jetson DLA core cannot run (NVIDIA's published DLA layer "
                   "restrictions) for an engine of this fixed batch size.")
@verbosity_options
def info(model: Path, as_json: bool, top: int, sidecar: Path | None, dla_batch: int | None):
    """Show what MODEL is: an ONNX model (.onnx), an OpenVINO IR (.xml), a TensorRT engine (.engine/.plan)
    with its sidecar, or an edgefer checkpoint (run directory, model.json, best.safetensors).

    Inputs and outputs (shapes, dtypes), layout, the preprocessing spec and where it comes from, opset,
    precision (fp32 / fp16 / int8 with the Q/DQ or FakeQuantize count), nodes by op type; size and sha256 of
    every file; for a checkpoint its architecture, metrics and training settings.
    """
    result = inspect_artefact(model, top=top, sidecar=sidecar)
    dla = None
    if dla_batch is not None:
        if result.kind != "onnx":
            raise UsageError(f"--dla-report applies to ONNX models, not to a {result.kind} ({model})")
        from ..export.dla import dla_report

        dla = dla_report(model, batch=dla_batch)
    if as_json:
        out = result.to_dict()
        if dla is not None:
            out["dla"] = asdict(dla)
        click.echo(json.dumps(printable_strings(out), indent=2))
    else:
        text = format_info(result) + ("\n" + "\n".join(dla.lines()) if dla is not None else "")
        click.echo(printable(text))
