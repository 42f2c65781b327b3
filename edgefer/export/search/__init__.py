"""The accuracy-bounded INT8 search (``--max-drop``): loop, attempt records, selection."""

from .loop import SearchInputs, run
from .records import Attempt
from .selection import LATENCY_TIE, choose, describe_attempt

__all__ = ["LATENCY_TIE", "Attempt", "SearchInputs", "choose", "describe_attempt", "run"]
