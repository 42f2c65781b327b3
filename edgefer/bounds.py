"""Allowed ranges of numeric options: one ``Bound`` per option, declared beside the config field it belongs to,
checked by the CLI before any work (``edgefer.cli.options.Number``) and by the configs' ``validate()``.

A bound is finite by construction: NaN and +-inf never pass, integers must be integers (``True`` and ``2.0`` are
not). Stdlib only: ``edgefer --help`` builds every option from these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INT32_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1  # numpy's legacy seeds and torch's manual_seed accept 0..2**32-1 everywhere
FLOAT_MAX = 1e6  # large enough for any option that has no natural upper limit, small enough to stay harmless


@dataclass(frozen=True)
class Bound:
    """``kind`` (int or float) in the range ``min``..``max``; ``*_open`` excludes that end."""

    kind: type = float
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    note: str = ""  # what the number means, shown after the range

    def describe(self) -> str:
        """What is allowed, e.g. ``an integer in [1, 2147483647]``, ``a finite number in (0, 1)``."""
        what = "an integer" if self.kind is int else "a finite number"
        if self.min is not None and self.max is not None:
            return (f"{what} in {'(' if self.min_open else '['}{_num(self.min)}, {_num(self.max)}"
                    f"{')' if self.max_open else ']'}")
        if self.min is not None:
            return f"{what} {'>' if self.min_open else '>='} {_num(self.min)}"
        if self.max is not None:
            return f"{what} {'<' if self.max_open else '<='} {_num(self.max)}"
        return what

    def parse(self, value):
        """``value`` (a number, or the text typed on the command line) as ``kind``; ValueError when it is not
        one (the message says what is allowed)."""
        if isinstance(value, bool):
            raise ValueError(self._why(value))
        if self.kind is int:
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                try:
                    return int(value.strip().replace("_", ""), 10)
                except ValueError:
                    pass
            raise ValueError(self._why(value))
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(self._why(value)) from None
        return number

    def problem(self, value) -> str | None:
        """Why ``value`` is not allowed (``must be ..., got ...``), or None when it is."""
        try:
            number = self.parse(value)
        except ValueError as exc:
            return str(exc)
        if not math.isfinite(number):  # NaN compares False with everything: test it first
            return self._why(value)
        low = self.min is not None and (number <= self.min if self.min_open else number < self.min)
        high = self.max is not None and (number >= self.max if self.max_open else number > self.max)
        return self._why(value) if low or high else None

    def _why(self, value) -> str:
        shown = value if isinstance(value, str) else repr(value)
        note = f" ({self.note})" if self.note else ""
        return f"must be {self.describe()}{note}, got {shown}"


def _num(x) -> str:
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e16):
        return str(int(x))
    return f"{x:g}"


def check(option: str, value, bound: Bound, error: type[Exception]) -> None:
    """Raise ``error("--option: must be ..., got ...")`` unless ``value`` is None or within ``bound``."""
    if value is None:
        return
    why = bound.problem(value)
    if why:
        raise error(f"{option}: {why}")


BOUND_KEYS = ("min", "max", "min_open", "max_open", "note")


def from_click(click_kwargs: dict) -> Bound | None:
    """The ``Bound`` declared in a config field's click metadata (``type`` int/float plus ``min``, ``max``,
    ``min_open``, ``max_open``, ``note``), or None for a field that is not a bounded number."""
    if click_kwargs.get("type") not in (int, float) or not any(k in click_kwargs for k in BOUND_KEYS):
        return None
    return Bound(click_kwargs["type"], **{k: click_kwargs[k] for k in BOUND_KEYS if k in click_kwargs})


def check_fields(config, error: type[Exception]) -> None:
    """Check every field of the dataclass ``config`` whose metadata (``option``, ``click``) declares a bound."""
    from dataclasses import fields

    for f in fields(config):
        bound = from_click(f.metadata.get("click", {}))
        if bound is not None:
            check(f.metadata["option"].split("/")[0], getattr(config, f.name), bound, error)
