"""Torch-side input pipeline: evaluation preprocessing and seeded per-batch augmentation of uint8 faces.

Images stay uint8 (N, 48, 48) in memory; each batch is resized, augmented and normalised on the fly.
Every random draw comes from an explicit ``torch.Generator``, so a batch is a pure function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..spec import ModelSpec

ERASE_AREA = (0.02, 0.2)  # fraction of the image a random-erasing box covers
ERASE_LOG_RATIO = (math.log(0.3), math.log(1 / 0.3))
CROP_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))


def _normalise(x: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """(x/255 - mean)/std per channel, replicating a gray plane when the network has 3 channels."""
    if spec.channels != x.shape[1]:
        x = x.expand(-1, spec.channels, -1, -1)
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x / 255.0 - mean) / std


def prepare_batch(images: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Evaluation input: uint8 (N, H, W) -> float32 (N, C, S, S), the same numbers as ``edgefer.preprocess.prepare``."""
    x = images.float().unsqueeze(1)
    if x.shape[-2:] != (spec.input_size, spec.input_size):
        x = F.interpolate(x, size=(spec.input_size, spec.input_size), mode="bilinear", align_corners=False)
    return _normalise(x, spec)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


@dataclass(frozen=True)
class Augmentation:
    """Strong augmentation for 48x48 faces: random resized crop, horizontal flip, rotation,
    brightness/contrast and random erasing; ``mix`` adds mixup/cutmix on top."""

    scale_min: float = 0.8  # random resized crop keeps this fraction of the area at least
    rotation: float = 10.0  # degrees, uniform in [-rotation, rotation]
    hflip: float = 0.5
    brightness: float = 0.2  # multiplicative factor in [1 - b, 1 + b]
    contrast: float = 0.2
    erasing: float = 0.25  # probability per image
    mixup: float = 0.0  # probability per batch
    cutmix: float = 0.0

    @classmethod
    def from_config(cls, config) -> Augmentation:
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})

    def __call__(self, images: torch.Tensor, spec: ModelSpec, generator: torch.Generator) -> torch.Tensor:
        """uint8 (N, H, W) -> augmented, normalised float32 (N, C, S, S)."""
        n, size = images.shape[0], spec.input_size
        x = images.float().unsqueeze(1)
        grid = F.affine_grid(self._affine(n, generator), [n, 1, size, size], align_corners=False)
        # With the identity transform this is exactly F.interpolate(bilinear, align_corners=False).
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = self._photometric(x, generator)
        x = _normalise(x, spec)
        return self._erase(x, generator)

    def _affine(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(N, 2, 3) maps from output to input coordinates: crop scale and centre, rotation, flip."""
        area = _uniform(n, self.scale_min, 1.0, generator)
        # aspect ratio in [3/4, 4/3], narrowed so that both sides fit: a full-area crop is the whole image
        low, high = area.log().clamp(min=CROP_LOG_RATIO[0]), (-area.log()).clamp(max=CROP_LOG_RATIO[1])
        ratio = torch.exp(low + (high - low) * torch.rand(n, generator=generator))
        width, height = (area * ratio).sqrt(), (area / ratio).sqrt()
        cx = _uniform(n, -1.0, 1.0, generator) * (1.0 - width)
        cy = _uniform(n, -1.0, 1.0, generator) * (1.0 - height)
        angle = _uniform(n, -self.rotation, self.rotation, generator) * (math.pi / 180.0)
        flip = torch.where(torch.rand(n, generator=generator) < self.hflip, -1.0, 1.0)
        cos, sin = angle.cos(), angle.sin()
        # diag(width, height) @ rotation @ diag(flip, 1), plus the crop centre
        row0 = torch.stack([width * cos * flip, -width * sin, cx], dim=1)
        row1 = torch.stack([height * sin * flip, height * cos, cy], dim=1)
        return torch.stack([row0, row1], dim=1)

    def _photometric(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        gain = _uniform(n, 1 - self.brightness, 1 + self.brightness, generator).view(n, 1, 1, 1)
        contrast = _uniform(n, 1 - self.contrast, 1 + self.contrast, generator).view(n, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (((x - mean) * contrast + mean) * gain).clamp(0.0, 255.0)

    def _erase(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Replace a random box in a fraction of the images with unit Gaussian noise (timm's 'pixel' mode)."""
        n, _, size, _ = x.shape
        area = _uniform(n, *ERASE_AREA, generator)
        ratio = torch.exp(_uniform(n, *ERASE_LOG_RATIO, generator))
        h = ((area * ratio).sqrt() * size).round().clamp(1, size)
        w = ((area / ratio).sqrt() * size).round().clamp(1, size)
        top = (torch.rand(n, generator=generator) * (size - h + 1)).floor()
        left = (torch.rand(n, generator=generator) * (size - w + 1)).floor()
        chosen = torch.rand(n, generator=generator) < self.erasing
        noise = torch.randn(x.shape, generator=generator)
        pos = torch.arange(size, dtype=x.dtype)
        rows = (pos >= top[:, None]) & (pos < (top + h)[:, None])
        cols = (pos >= left[:, None]) & (pos < (left + w)[:, None])
        mask = (rows[:, :, None] & cols[:, None, :] & chosen[:, None, None]).unsqueeze(1)
        return torch.where(mask, noise, x)

    def mix(self, x: torch.Tensor, labels: torch.Tensor, num_classes: int, generator: torch.Generator):
        """Mixup or cutmix (lambda ~ U(0, 1)) with the given per-batch probabilities.

        Returns (x, targets): integer labels when the batch is left alone, else class probabilities.
        """
        draw = float(torch.rand(1, generator=generator))
        if draw >= self.mixup + self.cutmix or x.shape[0] < 2:
            return x, labels
        lam = float(torch.rand(1, generator=generator))
        perm = torch.randperm(x.shape[0], generator=generator)
        if draw < self.cutmix:
            x, lam = _cutmix(x, perm, lam, generator)
        else:
            x = lam * x + (1 - lam) * x[perm]
        onehot = F.one_hot(labels, num_classes).float()
        return x, lam * onehot + (1 - lam) * onehot[perm]


def _cutmix(x: torch.Tensor, perm: torch.Tensor, lam: float, generator: torch.Generator):
    """Paste a box covering 1 - lam of the area from the permuted batch; return lam matching the box."""
    size = x.shape[-1]
    side = int(round(size * math.sqrt(1 - lam)))
    top, left = (int(v) for v in torch.randint(0, size - side + 1, (2,), generator=generator))
    x = x.clone()
    x[..., top : top + side, left : left + side] = x[perm][..., top : top + side, left : left + side]
    return x, 1.0 - side * side / (size * size)
