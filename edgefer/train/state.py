"""Resumable training state: model, EMA, optimizer, scaler and RNG tensors in safetensors, the rest in JSON."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelError
from ..fileio import read_json, sha256_file, write_bytes, write_json

STATE_TENSORS, STATE_JSON = "last_state.safetensors", "last_state.json"


def unwrap(model):
    """The module inside a DistributedDataParallel (or EMA) wrapper."""
    return getattr(model, "module", model)


def save_state(directory: Path, model, ema, optimizer, scaler, progress_state: dict) -> None:
    """Everything --resume needs: tensors in safetensors, the rest as JSON (nothing is ever unpickled).
    The LR schedule is not saved: it is a function of the step and the config, rebuilt on resume."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v for k, v in unwrap(model).state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.module.state_dict().items()})
    optim = optimizer.state_dict()
    scalars = {}
    for index, slots in optim["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    # bytes through fileio (mode 0644 like every artefact; safetensors' own file writer creates 0600)
    write_bytes(directory / STATE_TENSORS, save(tensors))
    write_json(directory / STATE_JSON, {
        **progress_state,
        "optimizer_param_groups": [{k: v for k, v in g.items()} for g in optim["param_groups"]],
        "optimizer_scalars": scalars,
        "scaler": scaler.state_dict(),
        "tensors_sha256": sha256_file(directory / STATE_TENSORS),
    })


def load_state(directory: Path, model, ema, optimizer, scaler) -> dict:
    """Restore what save_state wrote; return the progress dict (epoch, step, best, ...)."""
    from safetensors.torch import load_file

    json_path, tensor_path = directory / STATE_JSON, directory / STATE_TENSORS
    if not json_path.is_file() or not tensor_path.is_file():
        raise ModelError(f"--resume {directory}: no saved training state ({STATE_JSON}, {STATE_TENSORS})")
    meta = read_json(json_path, ModelError)
    if sha256_file(tensor_path) != meta.get("tensors_sha256"):
        raise ModelError(f"--resume {directory}: {STATE_TENSORS} does not match {STATE_JSON} (interrupted write?)")
    tensors = load_file(str(tensor_path))

    def prefixed(prefix):
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    unwrap(model).load_state_dict(prefixed("model."))
    if ema is not None:
        ema.module.load_state_dict(prefixed("ema."))
    state: dict = {}
    for key, value in prefixed("optim.").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for key, value in meta["optimizer_scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
    scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[f"rng.cuda.{i}"] for i in range(len(prefixed("rng.cuda.")))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    return meta
