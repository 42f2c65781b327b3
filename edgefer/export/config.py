"""What an export is asked to do: ``ExportConfig`` (target, precision and one options group per stage), plain data
whose ``validate()`` checks its own fields. Whether the target supports the precision and the quantizer is checked
where the targets are registered (``edgefer.export.steps.validate``); nothing here imports a module above it.

Every enumeration the code validates against is a tuple here (or in the module that owns it and is
re-exported here); the CLI builds its ``click.Choice`` options from the same tuples, and its options from
the field metadata (``option``, ``help``) of these dataclasses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..bounds import INT32_MAX, SEED_MAX, check_fields
from ..errors import ExportError
from .tensorrt import EngineOptions

# Light on purpose (no numpy): the CLI builds its options from this module when ``edgefer --help`` runs.
STRATEGIES = ("stratified", "balanced", "random")  # calibration draw (edgefer.export.calibration)
DEFAULT_SIZE, DEFAULT_FLOOR = 512, 16
EXPORTERS = ("auto", "dynamo", "legacy")  # PyTorch -> ONNX (edgefer.export.onnx)
OPSET = 18  # torch 2.13's dynamo exporter cannot down-convert EfficientNet's Pad to opset 17
PRESETS = ("mixed", "performance")  # NNCF (edgefer.export.openvino)
CALIB_METHODS = ("moving-average", "minmax", "entropy", "percentile")  # = edgefer.export.qdq.CALIB_METHODS
DEFAULT_CALIB_METHOD = "moving-average"
# Q/DQ placement (= edgefer.export.qdq.PLACEMENTS): NVIDIA's rules for TensorRT (weighted layers + the skip input of
# residual additions), weighted layers only (additions in float), or every op ONNX Runtime quantizes
PLACEMENTS = ("nvidia", "weighted", "all")
DEFAULT_PLACEMENT = "nvidia"
QUANTIZERS = ("ort-cpu", "ort", "nncf")
CHECK_SIZE = 1000  # validation images used by the export's own checks
DROP_UNITS = "an absolute macro-F1 difference; 0.005 = 0.5 percentage points"


def option(declaration: str, help: str, **click_kwargs) -> dict:
    """Field metadata from which the CLI generates one option (``click_kwargs``: type, is_flag, ...)."""
    return {"option": declaration, "help": help, "click": click_kwargs}


def _check_choice(option: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ExportError(f"{option} {value!r} is not supported; use one of {', '.join(choices)}")


@dataclass(frozen=True)
class OnnxOptions:
    """How the FP32 ONNX is made from a checkpoint (and checked against PyTorch)."""

    exporter: str = field(default="auto", metadata=option(
        "--exporter", "auto (dynamo, legacy on failure), dynamo or legacy.", choices=EXPORTERS))
    opset: int = field(default=OPSET, metadata=option(
        "--opset", "ONNX opset of the exported graph.", type=int, min=13, max=23))
    dynamic_batch: bool = field(default=True, metadata=option(
        "--dynamic/--static", "Dynamic batch dimension, or a static batch of 1 (checkpoints only)."))
    simplify: bool = field(default=False, metadata=option(
        "--simplify", "Run the onnxscript optimizer on the exported graph.", is_flag=True))
    parity_atol: float | None = field(default=None, metadata=option(
        "--parity-atol", "Max |logit difference| PyTorch vs ONNX (default 1e-3).", type=float, min=0, max=1000))

    def validate(self) -> OnnxOptions:
        _check_choice("--exporter", self.exporter, EXPORTERS)
        check_fields(self, ExportError)
        return self


@dataclass(frozen=True)
class CalibOptions:
    """How the INT8 calibration set is drawn (``edgefer.export.calibration``) and fed."""

    size: int = field(default=DEFAULT_SIZE, metadata=option(
        "--calib-size", "Calibration images to draw.", type=int, min=1, max=1_000_000))
    strategy: str = field(default="stratified", metadata=option(
        "--calib-strategy", "stratified (proportional, per-class floor), balanced or random.", choices=STRATEGIES))
    seed: int = field(default=0, metadata=option("--calib-seed", "Seed of the draw.", type=int, min=0, max=SEED_MAX))
    floor: int = field(default=DEFAULT_FLOOR, metadata=option(
        "--calib-floor", "Stratified: at least this many images of every class that has them.", type=int, min=0,
        max=1_000_000))
    val_fraction: float = field(default=0.1, metadata=option(
        "--val-fraction", "Validation share carved from the training data (as edgefer train does).", type=float, min=0,
        max=1, max_open=True))
    split_seed: int = field(default=0, metadata=option(
        "--split-seed", "Seed of the train/val split (as edgefer train --seed).", type=int, min=0, max=SEED_MAX))

    def validate(self) -> CalibOptions:
        _check_choice("--calib-strategy", self.strategy, STRATEGIES)
        check_fields(self, ExportError)
        return self


@dataclass(frozen=True)
class QuantOptions:
    """Which INT8 quantizer runs and with which settings (one quantization, or the search's starting point)."""

    quantizer: str | None = field(default=None, metadata=option(
        "--quantizer", "INT8 quantizer: ort-cpu (ONNX Runtime CPU kernels, U8S8 + INT32 bias; onnx, the default), ort (TensorRT-style "
        "Q/DQ graph; tensorrt, or onnx), nncf (openvino).", choices=QUANTIZERS))
    method: str = field(default=DEFAULT_CALIB_METHOD, metadata=option(
        "--calib-method", "Q/DQ calibration method.", choices=CALIB_METHODS))
    keep_fp: tuple[str, ...] = field(default=(), metadata=option(
        "--keep-fp", "Leave nodes in floating point: first-conv, classifier or an fnmatch pattern on node names "
        "(repeatable).", multiple=True))
    placement: str = field(default=DEFAULT_PLACEMENT, metadata=option(
        "--placement", "Where Q/DQ goes (TensorRT / --quantizer ort): nvidia (convolution inputs and the skip input "
        "of residual additions), weighted (convolution inputs only; additions stay in float: closer to FP32, "
        "one less INT8 fusion) or all (every op ONNX Runtime quantizes).", choices=PLACEMENTS))
    batch_size: int = field(default=32, metadata=option(
        "--calib-batch-size", "Images per calibration batch (Q/DQ).", type=int, min=1, max=65536))
    preset: str = field(default="mixed", metadata=option(
        "--preset", "OpenVINO NNCF preset.", choices=PRESETS))
    subset_size: int | None = field(default=None, metadata=option(
        "--subset-size", "OpenVINO NNCF: calibration images used (default: all).", type=int, min=1, max=INT32_MAX))
    fast_bias_correction: bool = field(default=True, metadata=option(
        "--fast-bias-correction/--bias-correction", "OpenVINO NNCF bias correction algorithm."))

    def validate(self) -> QuantOptions:
        if self.quantizer is not None and self.quantizer not in QUANTIZERS:
            raise ExportError(f"--quantizer {self.quantizer!r} is not supported; use one of {', '.join(QUANTIZERS)}")
        _check_choice("--calib-method", self.method, CALIB_METHODS)
        _check_choice("--preset", self.preset, PRESETS)
        _check_choice("--placement", self.placement, PLACEMENTS)
        check_fields(self, ExportError)
        return self


@dataclass(frozen=True)
class SearchOptions:
    """The accuracy-bounded INT8 search (``edgefer.export.search``); off unless ``max_drop`` is set."""

    max_drop: float | None = field(default=None, metadata=option(
        "--max-drop", "--int8: search calibration recipes, then FP32 fallbacks, until the macro-F1 drop vs FP32 on "
        "the validation split is at most this ABSOLUTE difference (0.005 = 0.5 percentage points; "
        "docs/int8_search.md). Needs --data.", type=float, min=0, max=1, max_open=True, note=DROP_UNITS))
    min_agreement: float | None = field(default=None, metadata=option(
        "--min-agreement", "--max-drop: also require this top-1 agreement with FP32 on the validation split, as a "
        "fraction (0.995 = 99.5 %).", type=float, min=0, max=1,
        note="the fraction of validation images whose top-1 class INT8 and FP32 agree on, 0.995 = 99.5 %"))
    attempts: int = field(default=12, metadata=option(
        "--search-attempts", "--max-drop: at most this many quantization attempts.", type=int, min=1, max=10_000))
    seconds: float | None = field(default=None, metadata=option(
        "--search-seconds", "--max-drop: stop starting new attempts after this many seconds.", type=float, min=0,
        min_open=True, max=1e7))
    qat_epochs: int = field(default=1, metadata=option(
        "--search-qat-epochs", "--max-drop from a checkpoint (TensorRT/ONNX Q/DQ): when no recipe passes and keeping "
        "non-convolution layers in floating point does not either, fine-tune this many epochs with fake "
        "quantization (edgefer qat; needs the qat extra) before any convolution leaves INT8; 0 = never.", type=int,
        min=0, max=1000))

    @property
    def enabled(self) -> bool:
        return self.max_drop is not None

    def validate(self) -> SearchOptions:
        check_fields(self, ExportError)
        if self.max_drop is None and self.min_agreement is not None:
            raise ExportError("--min-agreement is a bound of the INT8 search: add --max-drop (e.g. 0.005)")
        return self


@dataclass(frozen=True)
class EngineSettings:
    """How the TensorRT engine is built, as the CLI takes it (``--batch MIN,OPT,MAX``); ``options(precision)``
    gives the ``tensorrt.EngineOptions`` the builder and the printed commands use."""

    batch: str = field(default="1,8,32", metadata=option(
        "--batch", "TensorRT optimisation profile MIN,OPT,MAX batch (one number: fixed)."))
    workspace: int = field(default=1024, metadata=option(
        "--workspace", "TensorRT workspace limit, MiB.", type=int, min=1, max=2**20))
    timing_cache: str | None = field(default=None, metadata=option(
        "--timing-cache", "TensorRT timing cache file (loaded if present, saved after).", type=str))
    dla_core: int | None = field(default=None, metadata=option(
        "--dla-core", "Jetson: build for this DLA core (needs a fixed --batch).", type=int, min=0, max=15))
    allow_gpu_fallback: bool = field(default=True, metadata=option(
        "--allow-gpu-fallback/--no-gpu-fallback", "With --dla-core: run layers DLA cannot run on the GPU (else "
        "the build fails)."))
    strongly_typed: bool | None = field(default=None, metadata=option(
        "--strongly-typed/--weakly-typed", "TensorRT network typing (default: strongly typed on TensorRT 11+, "
        "weakly on 10.x)."))

    def options(self, precision: str, calib_cache: str | None = None) -> EngineOptions:
        from .tensorrt import parse_batch

        check_fields(self, ExportError)
        lo, opt, hi = parse_batch(self.batch)
        return EngineOptions(precision=precision, min_batch=lo, opt_batch=opt, max_batch=hi,
                             workspace_mb=self.workspace, timing_cache=self.timing_cache, dla_core=self.dla_core,
                             strongly_typed=self.strongly_typed, calib_cache=calib_cache,
                             allow_gpu_fallback=self.allow_gpu_fallback).validate()


@dataclass(frozen=True)
class ExportConfig:
    """One export: ``target`` x ``precision`` and the options of each stage. ``validate()`` returns the
    config with the quantizer resolved (``quant.quantizer`` set for INT8) or raises one ExportError."""

    target: str
    precision: str = "fp32"
    onnx: OnnxOptions = OnnxOptions()
    calib: CalibOptions = CalibOptions()
    quant: QuantOptions = QuantOptions()
    search: SearchOptions = SearchOptions()
    engine: EngineOptions | None = None  # tensorrt only (None: EngineOptions())
    build_engine: bool | None = None  # tensorrt: build here (None: when tensorrt imports)
    check_size: int = CHECK_SIZE

    def replace(self, **changes) -> ExportConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def build(cls, target: str, precision: str = "fp32", **options) -> ExportConfig:
        """A config from flat option names as the CLI spells them (``calib_size=64``, ``exporter="legacy"``,
        ``max_drop=0.01``); ``engine``, ``build_engine`` and ``check_size`` pass through."""
        groups: dict = {name: {} for name in _GROUP_FIELDS}
        direct = {k: options.pop(k) for k in ("engine", "build_engine", "check_size") if k in options}
        for name, value in options.items():
            if name not in _FLAT:
                raise ExportError(f"unknown export option {name!r} (known: {', '.join(sorted(_FLAT))})")
            group, field_name = _FLAT[name]
            groups[group][field_name] = tuple(value) if isinstance(value, list) else value
        return cls(target, precision, **{g: _GROUP_FIELDS[g](**values) for g, values in groups.items()}, **direct)

    def validate(self) -> ExportConfig:
        """Check this config's own fields (each options group, ``check_size``); returns it unchanged. What the
        target, precision and quantizer must be is the step registry's to say: ``steps.validate(config)``."""
        self.onnx.validate(), self.calib.validate(), self.quant.validate(), self.search.validate()
        if self.check_size < 1:
            raise ExportError(f"check_size must be >= 1, got {self.check_size}")
        return self


_GROUP_FIELDS = {"onnx": OnnxOptions, "calib": CalibOptions, "quant": QuantOptions, "search": SearchOptions}
# flat option name (the CLI's, without dashes) -> (group, field)
_FLAT = {f.metadata["option"].split("/")[0][2:].replace("-", "_"): (group, f.name)
         for group, cls in _GROUP_FIELDS.items() for f in dataclasses.fields(cls)}
