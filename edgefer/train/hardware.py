"""Where a training process runs: device, distributed rank and world size, AMP dtype and memory format."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..errors import InputError
from .config import TrainConfig

AMP_NAMES = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Hardware:
    """Where this process trains: device, distributed rank/world size, AMP dtype and memory format."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_hardware(config: TrainConfig) -> Hardware:
    """Pick the device, join the process group when started by torchrun (WORLD_SIZE > 1), resolve auto options."""
    if config.threads:
        torch.set_num_threads(config.threads)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if config.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(config.device)
        except RuntimeError:
            raise InputError(f"--device: unknown device {config.device!r} (cpu, cuda, cuda:N)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"--device {config.device}: CUDA is not available on this machine")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if world_size > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    if world_size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    amp = config.amp
    if amp == "auto":
        amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "off"
    if amp == "fp16" and device.type != "cuda":
        raise InputError("--amp fp16 needs CUDA; on CPU use --amp bf16 or off")
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    amp_dtype = {name: dtype for dtype, name in AMP_NAMES.items()}[amp]
    return Hardware(device, rank, world_size, amp_dtype, channels_last)


def autocast(hardware: Hardware):
    return torch.autocast(hardware.device.type, dtype=hardware.amp_dtype, enabled=hardware.amp_dtype is not None)
