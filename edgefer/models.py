"""Model factory and portable checkpoints (torch + timm; never imported by the runtime).

A checkpoint is a directory holding ``best.safetensors`` (weights only: loading never unpickles) and
``model.json`` (arch, model kwargs, the ModelSpec, and provenance added by the trainer).
"""

from __future__ import annotations

from pathlib import Path

from .errors import ModelError, require
from .fileio import atomic_path, read_json, sha256_file, write_json
from .spec import FER2013_LABELS, ModelSpec

CHECKPOINT_FORMAT = "edgefer-checkpoint/1"
WEIGHTS_NAME = "best.safetensors"
META_NAME = "model.json"


def _timm():
    require("torch", "train", "building models")
    from .compat import import_timm

    return import_timm()


def create_model(
    arch: str = "tf_efficientnetv2_s",
    *,
    num_classes: int = len(FER2013_LABELS),
    in_chans: int = 1,
    pretrained: bool = False,
    weights: str | Path | None = None,
    drop_rate: float = 0.2,
    drop_path_rate: float = 0.1,
):
    """Create a timm classifier with a light head (dropout + linear) for ``num_classes`` classes.

    ``pretrained`` loads timm's hub weights (online); ``weights`` loads a local timm state dict or
    safetensors file (offline). Either way timm adapts the stem to ``in_chans`` (summing the RGB filters
    for one channel) and drops a classifier whose class count differs.
    """
    timm = _timm()
    if arch not in timm.list_models() and arch not in timm.list_models(pretrained=True):
        raise ModelError(f"unknown timm architecture '{arch}' (see timm.list_models())")
    kwargs = dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ModelError(f"--weights: no such file {path}")
        import pickle

        from safetensors import SafetensorError

        try:
            return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
        except RuntimeError as exc:
            raise ModelError(f"--weights {path}: does not fit {arch}: {str(exc).splitlines()[0]}") from None
        except (pickle.UnpicklingError, SafetensorError, ValueError, EOFError) as exc:  # not a weights file
            raise ModelError(f"--weights {path}: not a readable state dict or safetensors file "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    try:
        return timm.create_model(arch, pretrained=pretrained, **kwargs)
    except OSError as exc:  # no network and nothing cached (huggingface_hub / urllib errors are OSErrors)
        if not pretrained:
            raise
        raise ModelError(f"--pretrained {arch}: cannot fetch the timm hub weights ({type(exc).__name__}); "
                         "offline, pass a local file with --weights PATH") from None


def spec_for(model, img_size: int, labels=FER2013_LABELS, arch: str = "") -> ModelSpec:
    """The preprocessing spec for a timm model: its pretrained mean/std, averaged for a 1-channel stem."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    mean, std = tuple(cfg.get("mean", (0.5, 0.5, 0.5))), tuple(cfg.get("std", (0.5, 0.5, 0.5)))
    in_chans = _in_chans(model)
    if in_chans == 1:
        mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
    return ModelSpec(
        labels=tuple(labels),
        input_size=int(img_size),
        channels=in_chans,
        mean=mean,
        std=std,
        color_order="gray" if in_chans == 1 else "rgb",
        arch=arch or cfg.get("architecture", ""),
    )


def _in_chans(model) -> int:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            return module.in_channels
    raise ModelError("model has no Conv2d stem")


def save_checkpoint(directory: str | Path, model, spec: ModelSpec, model_kwargs: dict, **info) -> Path:
    """Write ``best.safetensors`` and ``model.json`` atomically; ``info`` is merged into model.json."""
    require("safetensors", "train", "saving checkpoints")
    from safetensors.torch import save_file

    directory = Path(directory)
    weights = directory / WEIGHTS_NAME
    state = {k: v.detach().contiguous().cpu() for k, v in _unwrap(model).state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": CHECKPOINT_FORMAT})
    meta = {
        "format": CHECKPOINT_FORMAT,
        "arch": spec.arch,
        "model_kwargs": model_kwargs,
        "spec": spec.to_dict(),
        "weights_sha256": sha256_file(weights),
        **info,
    }
    write_json(directory / META_NAME, meta)
    return directory


def _unwrap(model):
    return getattr(model, "module", model)  # DistributedDataParallel / EMA wrappers


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """Resolve a run directory, ``model.json`` or ``best.safetensors`` to (weights, model.json)."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    weights = path if path.suffix == ".safetensors" else directory / WEIGHTS_NAME
    meta = directory / META_NAME
    for p in (meta, weights):
        if not p.is_file():
            raise ModelError(f"{path}: not an edgefer checkpoint (missing {p.name})")
    return weights, meta


def read_checkpoint_meta(path: str | Path) -> dict:
    _, meta_path = checkpoint_paths(path)
    meta = read_json(meta_path, ModelError)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{meta_path}: format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    return meta


def load_checkpoint(path: str | Path, device: str = "cpu"):
    """Return (model in eval mode, ModelSpec, model.json dict) from an edgefer checkpoint."""
    require("safetensors", "train", "loading checkpoints")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights, meta_path = checkpoint_paths(path)
    meta = read_checkpoint_meta(path)
    spec = ModelSpec.from_dict(meta.get("spec"), source=str(meta_path))
    kwargs = {**meta.get("model_kwargs", {}), "num_classes": spec.num_classes, "in_chans": spec.channels}
    model = create_model(meta["arch"], **kwargs)
    try:
        state = load_file(str(weights), device=device)
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"{weights}: cannot read weights ({exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{weights}: weights do not fit {meta['arch']}: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval(), spec, meta


def optimizer_param_groups(model, weight_decay: float, layer_decay: float | None = None) -> list[dict]:
    """AdamW parameter groups: no weight decay on biases/norms (timm's rule), optional layer-wise LR decay
    (``lr_scale`` per group, applied by timm's schedulers) and every group marked ``head`` True/False so the
    trainer can hold the backbone still (``--freeze-epochs``) while the classifier learns."""
    _timm()
    from timm.optim import param_groups_layer_decay, param_groups_weight_decay

    model = _unwrap(model)
    no_decay = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    if layer_decay is None:
        groups = param_groups_weight_decay(model, weight_decay, no_weight_decay_list=no_decay)
    else:
        groups = param_groups_layer_decay(model, weight_decay, no_weight_decay_list=no_decay, layer_decay=layer_decay)
    head = {id(p) for p in model.get_classifier().parameters()}
    split = []
    for group in groups:
        for is_head in (False, True):
            params = [p for p in group["params"] if (id(p) in head) == is_head]
            if params:
                split.append({**group, "params": params, "head": is_head})
    return split
