"""All training options in one dataclass, saved with every run as ``config.json`` and ``config.yaml``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

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
        if not 8 <= self.img_size <= 1024:
            bad("img_size", f"must be in 8..1024, got {self.img_size}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                bad(name, f"must be at least 1, got {getattr(self, name)}")
        for name in ("max_steps", "limit_train"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                bad(name, f"must be at least 1, got {getattr(self, name)}")
        if not 0.0 < self.val_fraction < 1.0:
            bad("val_fraction", f"must be a share of the data strictly between 0 and 1 (e.g. 0.1), "
                                f"got {self.val_fraction}")
        if self.threads is not None and self.threads < 1:
            bad("threads", f"must be at least 1 (leave it out to use torch's default), got {self.threads}")
        if self.workers < -1:
            bad("workers", f"must be -1 (automatic), 0 (main process) or more, got {self.workers}")
        for name in ("drop_rate", "drop_path_rate"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) < 1.0:
                bad(name, f"must be in [0, 1), got {getattr(self, name)}")
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            bad("warmup_epochs", f"must be 0 or more, got {self.warmup_epochs}")
        if not 0.0 <= self.label_smoothing < 1.0:
            bad("label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 < self.scale_min <= 1.0:
            bad("scale_min", f"must be in (0, 1], got {self.scale_min}")
        for name in ("hflip", "erasing", "mixup", "cutmix"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                bad(name, f"must be a probability in [0, 1], got {getattr(self, name)}")
        if self.lr is not None and self.lr <= 0:
            bad("lr", f"must be positive, got {self.lr}")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            bad("layer_decay", f"must be in (0, 1], got {self.layer_decay}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            bad("ema", f"decay must be in (0, 1), got {self.ema}")
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
