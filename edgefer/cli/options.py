"""Options every command shares: ``-q/--quiet``, ``-v/--verbose`` and ``--exist-ok``, and the up-front output
check. Light imports only (click + stdlib): ``edgefer --help`` imports every CLI module."""

from __future__ import annotations

import click

from .. import logs
from ..bounds import Bound


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        logs.set_verbosity(logs.QUIET if param.name == "quiet" else logs.VERBOSE)


def verbosity_options(command):
    """(The group resets the level to normal before each command.) Add ``-q/--quiet`` (results and errors only) and ``-v/--verbose`` (third-party logs too)."""
    command = click.option("-v", "--verbose", is_flag=True, expose_value=False, is_eager=True,
                           callback=_set_verbosity, help="Also show third-party logs (NNCF, OpenVINO, ...).")(command)
    return click.option("-q", "--quiet", is_flag=True, expose_value=False, is_eager=True, callback=_set_verbosity,
                        help="Print results and errors only: no progress, no informational lines.")(command)


def exist_ok_option(command):
    """Add ``--exist-ok``: replace existing outputs instead of refusing to."""
    return click.option("--exist-ok", is_flag=True, help="Replace existing outputs (default: refuse).")(command)


class NumberError(click.BadParameter):
    """A numeric option out of its range, shown as ``--option: must be ..., got ...``."""

    def format_message(self) -> str:
        param = self.param
        names = [o for o in getattr(param, "opts", ()) if o.startswith("--")] if param else []
        name = names[0] if names else (param.name if param else "value")
        return f"{name}: {self.message}"


class Number(click.ParamType):
    """A numeric option within a ``Bound``: finite (NaN and +-inf never pass), an integer where it must be, in
    range. Checked while the command line is parsed, so before any work."""

    def __init__(self, bound: Bound | None = None, **bound_kwargs):
        self.bound = bound or Bound(**bound_kwargs)
        self.name = "integer" if self.bound.kind is int else "float"

    def get_metavar(self, param, ctx=None) -> str:
        return "INTEGER" if self.bound.kind is int else "FLOAT"

    def convert(self, value, param, ctx):
        why = self.bound.problem(value)
        if why:
            raise NumberError(why, ctx=ctx, param=param)
        return self.bound.parse(value)

    def __repr__(self) -> str:
        return f"Number({self.bound.describe()})"


def number(kind: type = float, **bound_kwargs) -> Number:
    """``Number(Bound(kind, ...))``: ``number(int, min=1)``, ``number(min=0, max=1, max_open=True)``."""
    return Number(Bound(kind, **bound_kwargs))


def printable(text) -> str:
    """``text`` (a str, or a file name as str/bytes/Path) as text that can always be printed and written as
    UTF-8: bytes of a file name that are not valid UTF-8 (which Python keeps as surrogate escapes) appear as
    ``\\xNN``."""
    import os

    if not isinstance(text, str):
        text = os.fsdecode(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def printable_strings(obj):
    """``obj`` (JSON-like: dicts, lists, strings, numbers) with every string made ``printable`` (bytes, which
    a broken model file can put where text belongs, too)."""
    if isinstance(obj, (str, bytes)):
        return printable(obj)
    if isinstance(obj, dict):
        return {printable_strings(k): printable_strings(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [printable_strings(v) for v in obj]
    return obj


def single_line(text) -> str:
    """``printable(text)`` with control characters (a newline or carriage return in a file name, an escape
    sequence) written the way ``repr`` writes them, ``\\n``, ``\\r``, ``\\x1b``: a message shown as one line
    stays one line whatever the file names in it hold."""
    text = printable(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
