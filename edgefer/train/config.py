"""All training options in one dataclass, saved with every run as ``config.json`` and ``config.yaml``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..bounds import INT32_MAX, SEED_MAX, Bound, check
from ..data.dataset import SPLIT_NAMES
from ..errors import EdgeferError, InputError
from ..fileio import read_json, write_json, write_text

LOSSES = ("ce", "weighted-ce", "focal")
CLASS_WEIGHT_METHODS = ("inverse", "effective")
AMP_MODES = ("auto", "off", "bf16", "fp16")
SPLITS = SPLIT_NAMES  # the data layer's split names
RECIPES = ("auto", "scratch", "finetune")
# The options whose default depends on where the weights start (docs/training.md, "Two recipes"):
# "finetune" starts from --pretrained/--weights, "scratch" from a random initialisation.
RECIPE_DEFAULTS = {
    "finetune": dict(loss="weighted-ce", lr=1e-3, warmup_epochs=1.0, drop_path_rate=0.1, erasing=0.25,
                     zero_init_residual=False),
    "scratch": dict(loss="ce", lr=2e-3, warmup_epochs=0.25, drop_path_rate=0.0, erasing=0.0,
                    zero_init_residual=True),
}
RECIPE_FIELDS = tuple(RECIPE_DEFAULTS["finetune"])
MAX_WARMUP_SHARE = 0.2  # warm-up never takes more than this share of the run's steps
CONFIG_JSON, CONFIG_YAML = "config.json", "config.yaml"
# Options that may differ when a run is resumed (they do not change what is being trained).
RESUMABLE_OVERRIDES = ("epochs", "max_steps", "patience", "workers", "device", "threads")

_PROBABILITY = Bound(float, 0, 1, note="a probability")
_SHARE = Bound(float, 0, 1, max_open=True)
_MAX_EPOCHS = 100_000
# The allowed range of every numeric option (checked by the CLI while parsing, and by validate()).
BOUNDS = {
    "img_size": Bound(int, 8, 1024),
    "drop_rate": _SHARE,
    "drop_path_rate": _SHARE,
    "val_fraction": Bound(float, 0, 1, min_open=True, max_open=True,
                          note="the share of train held out, e.g. 0.1"),
    "limit_train": Bound(int, 1, INT32_MAX),
    "focal_gamma": Bound(float, 0, 100),
    "label_smoothing": _SHARE,
    "scale_min": Bound(float, 0, 1, min_open=True),
    "rotation": Bound(float, 0, 180, note="degrees"),
    "hflip": _PROBABILITY,
    "brightness": Bound(float, 0, 1, note="factor 1 +- b"),
    "contrast": Bound(float, 0, 1, note="factor 1 +- c"),
    "erasing": _PROBABILITY,
    "mixup": _PROBABILITY,
    "cutmix": _PROBABILITY,
    "epochs": Bound(int, 1, _MAX_EPOCHS),
    "max_steps": Bound(int, 1, INT32_MAX),
    "batch_size": Bound(int, 1, 65536),
    "lr": Bound(float, 0, 10, min_open=True),
    "min_lr": Bound(float, 0, 10),
    "weight_decay": Bound(float, 0, 10),
    "warmup_epochs": Bound(float, 0, _MAX_EPOCHS),
    "grad_clip": Bound(float, 0, 1e6, note="0 = off"),
    "layer_decay": Bound(float, 0, 1, min_open=True),
    "freeze_epochs": Bound(int, 0, _MAX_EPOCHS),
    "ema": Bound(float, 0, 1, min_open=True, max_open=True, note="a decay, e.g. 0.999"),
    "patience": Bound(int, 1, _MAX_EPOCHS, note="epochs without val macro-F1 gain"),
    "workers": Bound(int, -1, 1024, note="-1 automatic, 0 the main process"),
    "threads": Bound(int, 1, 4096),
    "eval_batch_size": Bound(int, 1, 65536),
    "seed": Bound(int, 0, SEED_MAX),
}


@dataclass
class TrainConfig:
    """Every option of ``edgefer train``; the defaults are the recipe documented in docs/training.md."""

    data: str = ""
    out: str = ""
    arch: str = "tf_efficientnetv2_s"
    img_size: int = 112
    pretrained: bool = False
    weights: str | None = None
    recipe: str = "auto"  # resolved to scratch or finetune (fields below left None take its defaults)
    drop_rate: float = 0.2
    drop_path_rate: float | None = None
    zero_init_residual: bool | None = None  # start residual branches at zero (ignored with --weights/--pretrained)
    # data
    val_fraction: float = 0.1
    skip_bad: bool = False
    limit_train: int | None = None
    # imbalance
    loss: str | None = None
    class_weights: str = "inverse"
    focal_gamma: float = 2.0
    label_smoothing: float = 0.1
    balanced_sampler: bool = False
    # augmentation
    scale_min: float = 0.8
    rotation: float = 10.0
    hflip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    erasing: float | None = None
    mixup: float = 0.0
    cutmix: float = 0.0
    # optimisation
    epochs: int = 30
    max_steps: int | None = None
    batch_size: int = 64
    lr: float | None = None
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    warmup_epochs: float | None = None
    grad_clip: float = 1.0
    layer_decay: float | None = None
    freeze_epochs: int = 0
    ema: float | None = None
    patience: int = 8
    # hardware
    amp: str = "auto"
    channels_last: bool | None = None
    device: str = "auto"
    workers: int = -1
    threads: int | None = None
    # evaluation and reproducibility
    tta: bool = False
    eval_batch_size: int = 256
    seed: int = 0

    @property
    def starts_from_weights(self) -> bool:
        return bool(self.pretrained or self.weights)

    def resolved(self) -> TrainConfig:
        """A validated copy with ``recipe`` made explicit (auto: finetune when --pretrained or --weights is
        given, else scratch) and every recipe option left None set to that recipe's default."""
        recipe = self.recipe
        if recipe == "auto":
            recipe = "finetune" if self.starts_from_weights else "scratch"
        if recipe not in RECIPE_DEFAULTS:
            raise InputError(f"--recipe: must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        fill = {k: v for k, v in RECIPE_DEFAULTS[recipe].items() if getattr(self, k) is None}
        return replace(self, recipe=recipe, **fill).validate()

    def validate(self) -> TrainConfig:
        """Check every option (recipe options may still be None: ``resolved`` fills them)."""
        def bad(option, why):
            raise InputError(f"--{option.replace('_', '-')}: {why}")

        if self.recipe not in RECIPES:
            bad("recipe", f"must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        if self.loss is not None and self.loss not in LOSSES:
            bad("loss", f"must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.class_weights not in CLASS_WEIGHT_METHODS:
            bad("class_weights", f"must be one of {', '.join(CLASS_WEIGHT_METHODS)}, got {self.class_weights!r}")
        if self.amp not in AMP_MODES:
            bad("amp", f"must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        for name, bound in BOUNDS.items():  # None: not given (the recipe or torch decides)
            check("--" + name.replace("_", "-"), getattr(self, name), bound, InputError)
        if self.pretrained and self.weights:
            bad("weights", "give either --pretrained (timm hub) or --weights PATH (local file), not both")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{source}: unknown option(s) {', '.join(unknown)}")
        return cls(**data).validate()

    def save(self, directory: str | Path) -> None:
        """Write ``config.json`` (read back by --resume and eval) and ``config.yaml`` (for people)."""
        import yaml

        write_json(Path(directory) / CONFIG_JSON, self.to_dict())
        write_text(Path(directory) / CONFIG_YAML, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, directory: str | Path) -> TrainConfig:
        path = Path(directory) / CONFIG_JSON
        if not path.is_file():
            raise EdgeferError(f"{directory}: not a training run directory (missing {CONFIG_JSON})")
        return cls.from_dict(read_json(path, EdgeferError), source=str(path))
