"""Which passing attempt the INT8 search keeps, and how attempts are described in messages."""

from __future__ import annotations

from ..config import DROP_UNITS
from .records import Attempt

LATENCY_TIE = 0.10  # latencies within 10 % are measurement noise on a shared CPU: prefer the higher macro-F1
SELECTION_BY_LATENCY = (f"fastest passing attempt; latencies within {LATENCY_TIE:.0%} tie, then the higher macro-F1, "
                        "the larger share of convolution MACs in INT8, fewer layers in floating point")
SELECTION_BY_STRUCTURE = ("passing attempt with the largest share of convolution MACs in INT8, then the fewest layers "
                          "in floating point (the most INT8 for TensorRT), then the higher macro-F1; CPU latencies of "
                          "TensorRT Q/DQ graphs are not a TensorRT proxy")


def choose(attempts: list[Attempt], by_latency: bool = True) -> Attempt | None:
    """The fastest passing attempt; within LATENCY_TIE of the fastest, the highest macro-F1 (then the largest
    conv-MAC share in INT8, the fewest FP32 layers, the earliest). ``by_latency=False``: the largest conv-MAC
    share in INT8, then the fewest FP32 layers, then the highest macro-F1."""
    passing = [a for a in attempts if a.passed]
    if not passing:
        return None
    if not by_latency:
        return min(passing, key=lambda a: (-_share(a), a.excluded_count, -a.macro_f1, a.index))
    fastest = min(a.latency_ms for a in passing)
    tied = [a for a in passing if a.latency_ms <= fastest * (1 + LATENCY_TIE)]
    return min(tied, key=lambda a: (-a.macro_f1, -_share(a), a.excluded_count, a.index))


def _share(attempt: Attempt) -> float:
    return 1.0 if attempt.conv_macs_int8 is None else attempt.conv_macs_int8


def conv_share_text(share: float | None) -> str:
    """``conv MACs in INT8: 97.3 %`` (``n/a`` for a model without convolution layers)."""
    return "conv MACs in INT8: n/a" if share is None else f"conv MACs in INT8: {100 * share:.1f} %"


def describe_kept(attempt: Attempt | dict, limit: int = 6) -> str:
    """``5 kept in float: /blocks.1/Add (Add), /conv_head/Conv (Conv) and 3 more`` or ``nothing kept in float``."""
    kept = attempt["kept_in_float"] if isinstance(attempt, dict) else attempt.kept_in_float
    if not kept:
        return "nothing kept in float"
    shown = ", ".join(f"{k['node']} ({k['op']})" for k in kept[:limit])
    return f"{len(kept)} kept in float: {shown}{f' and {len(kept) - limit} more' if len(kept) > limit else ''}"


def _kept_count(attempt: Attempt | dict) -> int:
    """The layers an attempt runs in float: the search's exclusions and every layer the quantizer keeps in float
    by its own rules (what ``describe_kept`` lists); the exclusions alone for records without that list."""
    if isinstance(attempt, dict):
        kept, excluded = attempt.get("kept_in_float"), attempt["excluded_count"]
    else:
        kept, excluded = attempt.kept_in_float, attempt.excluded_count
    return max(len(kept), excluded) if kept else excluded


def closest(attempt: Attempt) -> tuple:
    """Sort key: the smallest shortfall from the bounds (drop above --max-drop plus agreement below
    --min-agreement), then the smallest drop, then the highest agreement."""
    return attempt.shortfall, attempt.macro_f1_drop, -attempt.top1_agreement


def describe_attempt(attempt: Attempt | dict) -> str:
    """``method=moving-average, 2 layer(s) kept in float, conv MACs in INT8: 97.3 %``: an attempt in one phrase
    (the count is that of ``describe_kept``)."""
    if isinstance(attempt, dict):
        recipe, share = attempt["recipe"], attempt.get("conv_macs_int8")
    else:
        recipe, share = attempt.recipe, attempt.conv_macs_int8
    return (f"{', '.join(f'{k}={v}' for k, v in recipe.items())}, {_kept_count(attempt)} layer(s) kept in float, "
            f"{conv_share_text(share)}")


def failure_message(report: dict, attempts: list[Attempt], report_path) -> str:
    best = min(attempts, key=closest)
    where = f"; every attempt is listed in {report_path}" if report_path else ""
    agreement = f" and top-1 agreement at least {report['min_agreement']:g}" if report["min_agreement"] else ""
    return (f"INT8 search: no recipe kept the macro-F1 drop within --max-drop {report['max_drop']:g} ({DROP_UNITS})"
            f"{agreement} after {len(attempts)} attempt(s) in {report['seconds']:.0f} s; FP32 macro-F1 "
            f"{report['reference']['macro_f1']:.4f}, best attempt #{best.index} {describe_attempt(best)}: macro-F1 "
            f"{best.macro_f1:.4f} (drop {best.macro_f1_drop:.4f}, top-1 agreement {best.top1_agreement:.4f})"
            f"{where}; relax the bound, raise --search-attempts, or use --fp16")
