"""One attempt of the INT8 search, as recorded in export.json ``int8_search.attempts``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Attempt:
    index: int
    stage: str  # "A": a recipe; "B": non-convolution layers kept in FP32; "QAT": quantization-aware fine-tuning;
    # "C": convolutions out of INT8 too
    recipe: dict
    excluded: list[str]
    macro_f1: float
    accuracy: float
    macro_f1_drop: float
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    top1_agreement: float
    shortfall: float  # drop above --max-drop plus agreement below --min-agreement (0: passed)
    per_class_f1: dict
    latency_ms: float
    quantization_seconds: float
    seconds: float
    conv_macs_int8: float | None = None  # share of the convolution layers' MACs the model runs in INT8
    conv_macs: dict = field(default_factory=dict)  # {"int8": MACs per image in INT8, "total": all conv MACs}
    kept_in_float: list = field(default_factory=list)  # [{"node", "op", "conv_macs"}]: excluded + float convs
    excluded_count: int = field(init=False)
    passed: bool = field(init=False)

    def __post_init__(self):
        self.excluded_count = len(self.excluded)
        self.passed = self.shortfall <= 1e-12

    def to_json(self) -> dict:
        out = asdict(self)
        order = ("index", "stage", "recipe", "excluded", "excluded_count", "macro_f1", "accuracy", "macro_f1_drop",
                 "max_abs_logit_diff", "mean_abs_logit_diff", "top1_agreement", "shortfall", "passed",
                 "conv_macs_int8", "conv_macs", "kept_in_float", "per_class_f1", "latency_ms",
                 "quantization_seconds", "seconds")
        return {k: out[k] for k in order}
