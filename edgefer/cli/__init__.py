"""The ``edgefer`` command. Subcommands live one per module and are imported only when invoked,
so ``edgefer --help`` and the data commands never import torch."""

from __future__ import annotations

import importlib
import sys

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
    "info": "edgefer.cli.info:info",
    "qat": "edgefer.cli.qat:qat",
    "serve": "edgefer.cli.serve:serve",
}


class OneLineError(click.ClickException):
    """An error the CLI shows as one line ``edgefer: error: ...`` on stderr, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        from .options import single_line

        click.echo(f"edgefer: error: {single_line(self.format_message())}", err=True)


class Interrupted(OneLineError):
    """Ctrl-C (SIGINT) while a command runs: one line ``edgefer: error: interrupted ...``, exit 130 (128 + SIGINT),
    instead of click's "Aborted!" with exit 1."""

    exit_code = 130


def one_line(exc: click.ClickException) -> click.ClickException:
    """A click error (unknown option, bad choice, missing argument, bad value, unreadable file) as one line
    naming the command it belongs to. A group called without a subcommand still shows its help."""
    from .options import NumberError

    if isinstance(exc, (OneLineError, getattr(click.exceptions, "NoArgsIsHelpError", OneLineError))):
        return exc
    if isinstance(exc, NumberError):  # "--lr: must be ..., got nan", as the configs' own checks say it
        return OneLineError(exc.format_message())
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path.split(" ", 1)[1] if ctx and " " in ctx.command_path else ""
    return OneLineError(f"{path}: {exc.format_message()}" if path else exc.format_message())


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module on first use and turns user errors (EdgeferError and
    click's usage errors, of the group and of every subcommand) into one line ``edgefer: error: ...``, exit 2.
    ``--help`` and ``--version`` work as usual."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as exc:  # an unknown or bad option of the group itself
            raise one_line(exc) from None

    def invoke(self, ctx):
        logs.set_verbosity(logs.NORMAL)  # each command starts normal; its -q/-v options change that
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:  # parsing a subcommand's (or sub-group's) arguments, or a command's
            raise one_line(exc) from None  # own click.FileError / BadParameter
        except EdgeferError as exc:
            raise OneLineError(str(exc)) from None
        except OSError as exc:  # a full disk, a read-only mount, no permission: where a writer did not name it
            from ..fileio import WRITE_ERRNOS

            if exc.errno not in WRITE_ERRNOS:
                raise
            where = f"{exc.filename}: " if exc.filename else ("standard output: " if _on_stdout(exc) else "")
            raise OneLineError(f"{where}{exc.strerror or exc}") from None
        except KeyboardInterrupt:  # Ctrl-C: one line and 130, not click's "Aborted!" and 1
            raise Interrupted("interrupted (Ctrl-C)") from None


def _on_stdout(exc: OSError) -> bool:
    """Whether a write error without a file name came from writing the command's own output: the innermost
    Python frame (the one that called ``write``/``flush``) holds standard output, itself or as an object's
    ``file`` (click.echo, a rich console)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    streams = [s for s in (sys.stdout, sys.__stdout__) if s is not None]
    streams += [s.buffer for s in list(streams) if hasattr(s, "buffer")]

    def holds(value) -> bool:
        try:
            return any(value is s or getattr(value, "file", None) is s for s in streams)
        except Exception:  # a local whose attribute access fails is not standard output
            return False

    return any(holds(v) for v in tb.tb_frame.f_locals.values())


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgefer")
def main():
    """Facial emotion recognition for the edge: train, export (ONNX, OpenVINO, TensorRT), predict, bench."""
