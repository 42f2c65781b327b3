"""Model factory and portable checkpoints (torch + timm; never imported by the runtime).

A checkpoint is a directory holding ``best.safetensors`` (weights only: loading never unpickles) and
``model.json`` (arch, model kwargs, the ModelSpec, and provenance added by the trainer).
"""

from __future__ import annotations

from pathlib import Path

from .errors import ModelError, require
from .fileio import read_json, sha256_file, write_bytes, write_json
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
    if pretrained:
        check_hub(arch)
    try:
        model = timm.create_model(arch, pretrained=pretrained, **kwargs)
    except OSError as exc:  # no network and nothing cached (huggingface_hub / urllib errors are OSErrors)
        if not pretrained:
            raise
        raise ModelError(f"--pretrained {arch}: cannot fetch the timm hub weights ({type(exc).__name__}); "
                         "offline, pass a local file with --weights PATH") from None
    return model


def has_new_classifier(model, num_classes: int, from_weights: bool) -> bool:
    """Whether create_model left the classifier at its random init: always from scratch, and with
    --pretrained/--weights whenever the class count differs from the weights' (timm then drops their head)."""
    return not from_weights or (getattr(model, "pretrained_cfg", None) or {}).get("num_classes") != num_classes


def zero_classifier(model) -> None:
    """Start a new classifier at zero (the trainer does, for a head that has_new_classifier): every class gets the same logit (loss ln(classes)) and the first
    gradients shape the head instead of undoing random logits. timm's default head init (uniform in
    +-1/sqrt(classes), made for 1000 classes) gives 7-class logits in the tens: a from-scratch
    tf_efficientnetv2_s starts at loss 4.8 with gradient norms near 2000 (docs/training.md)."""
    import torch

    head = model.get_classifier()
    if isinstance(head, torch.nn.Linear):
        with torch.no_grad():
            head.weight.zero_()
            if head.bias is not None:
                head.bias.zero_()


def zero_init_residual(model) -> int:
    """Start every residual branch at zero (the scratch recipe does; returns how many branches): the last
    BatchNorm of each block with a skip connection gets a zero scale, so at init the block is the identity
    and the network behaves like its few down-sampling blocks (Goyal et al. 2017, "zero-gamma"; timm's
    ResNets do this by default, its EfficientNets do not). A from-scratch tf_efficientnetv2_s at 48 px
    otherwise sits on the class-prior plateau for hundreds of steps (docs/training.md, "The demo")."""
    import torch

    count = 0
    for module in model.modules():
        if callable(getattr(module, "zero_init_last", None)):  # timm ResNet/ResNeXt-style blocks
            module.zero_init_last()
            count += 1
        elif getattr(module, "has_skip", False):  # timm EfficientNet/MobileNet blocks
            norms = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
            if norms:
                with torch.no_grad():
                    norms[-1].weight.zero_()
                count += 1
    return count


HUB_TIMEOUT_S = 3.0


def check_hub(arch: str, timeout: float = HUB_TIMEOUT_S) -> None:
    """Fail fast when --pretrained weights are neither cached nor reachable: one TCP connection attempt to
    the hub (a few seconds) instead of huggingface_hub's minute of retries."""
    import os
    import socket
    from urllib.parse import urlparse

    timm = _timm()
    try:
        cfg = timm.models.get_pretrained_cfg(arch)
    except (RuntimeError, KeyError, ValueError):
        return  # unknown to timm's registry: let timm report it
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if hub_id and _hub_cached(hub_id):
        return
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise ModelError(f"--pretrained {arch}: HF_HUB_OFFLINE is set and the weights are not cached; "
                         "pass a local file with --weights PATH")
    url = os.environ.get("HF_ENDPOINT", "https://huggingface.co") if hub_id else (getattr(cfg, "url", "") or "")
    host = urlparse(url).hostname
    if not host:
        return
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as exc:
        raise ModelError(f"--pretrained {arch}: cannot reach {host} ({exc.strerror or type(exc).__name__}, "
                         f"{timeout:g} s); offline, pass a local file with --weights PATH") from None


def _hub_cached(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    repo = hub_id.split("@")[0]
    return any(isinstance(try_to_load_from_cache(repo, name), str)
               for name in ("model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin"))


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
    from safetensors.torch import save

    directory = Path(directory)
    weights = directory / WEIGHTS_NAME
    state = {k: v.detach().contiguous().cpu() for k, v in _unwrap(model).state_dict().items()}
    # bytes through fileio (mode 0644 like every artefact; safetensors' own file writer creates 0600)
    write_bytes(weights, save(state, metadata={"format": CHECKPOINT_FORMAT}))
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


def training_data(meta: dict) -> str | None:
    """The data a checkpoint was trained on (``model.json``), as a path that works from any folder: training
    records it as given (maybe relative to the folder it ran in) and as an absolute path. None when the run
    does not record it; a ``DataError`` when it is no longer there (never a different file of the same name
    in the current folder)."""
    import os

    from .errors import DataError

    recorded = (meta.get("config") or {}).get("data")
    if not recorded:
        return None
    absolute = (meta.get("data") or {}).get("source_abs")
    if absolute is None:  # a run from before the absolute path was recorded
        return recorded
    if not os.path.exists(absolute):
        where = "" if os.path.isabs(recorded) else f" (given as {recorded} where training ran)"
        raise DataError(f"the data this model was trained on, {absolute}{where}, is not there any more; "
                        "pass --data")
    return absolute


def read_checkpoint_meta(path: str | Path) -> dict:
    _, meta_path = checkpoint_paths(path)
    meta = read_json(meta_path, ModelError)
    if not isinstance(meta, dict):
        raise ModelError(f"{meta_path}: not an edgefer checkpoint description (a JSON {type(meta).__name__}, "
                         "expected an object)")
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
