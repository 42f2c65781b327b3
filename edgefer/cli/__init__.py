"""The ``edgefer`` command. Subcommands live one per module and are imported only when invoked,
so ``edgefer --help`` and the data commands never import torch."""

from __future__ import annotations

import importlib

import click

from .. import logs
from ..errors import EdgeferError

# command name -> "module:attribute"
COMMANDS = {
    "data": "edgefer.cli.data:data",
    "train": "edgefer.cli.train:train",
    "eval": "edgefer.cli.train:evaluate",
    "calibrate": "edgefer.cli.export:calibrate",
    "export": "edgefer.cli.export:export",
    "build-engine": "edgefer.cli.export:build_engine",
    "predict": "edgefer.cli.predict:predict",
    "bench": "edgefer.cli.bench:bench",
    "qat": "edgefer.cli.qat:qat",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module on first use and turns user errors into one line."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx):
        logs.set_verbosity(logs.NORMAL)  # each command starts normal; its -q/-v options change that
        try:
            return super().invoke(ctx)
        except EdgeferError as exc:
            click.echo(f"edgefer: error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgefer")
def main():
    """Facial emotion recognition for the edge: train, export (ONNX, OpenVINO, TensorRT), predict, bench."""
