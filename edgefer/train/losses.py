"""Imbalance-aware losses: plain or class-weighted cross-entropy, and focal loss; label smoothing for all."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class ClassificationLoss(torch.nn.Module):
    """Cross-entropy (``gamma=0``) or focal loss (``gamma>0``) with optional per-class weights.

    Targets are class indices or class probabilities (mixup/cutmix). Cross-entropy is torch's own
    ``F.cross_entropy``; focal loss is ``-sum_c w_c t_c (1 - p_c)^gamma log p_c`` with the same
    label smoothing, averaged over the batch.
    """

    def __init__(self, weights: torch.Tensor | None = None, label_smoothing: float = 0.0, gamma: float = 0.0):
        super().__init__()
        self.register_buffer("weights", None if weights is None else torch.as_tensor(weights, dtype=torch.float32))
        self.label_smoothing, self.gamma = label_smoothing, gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.gamma == 0:
            return F.cross_entropy(logits, targets, weight=self.weights, label_smoothing=self.label_smoothing)
        num_classes = logits.shape[1]
        if targets.dtype != torch.float32:
            targets = F.one_hot(targets, num_classes).float()
        targets = targets * (1 - self.label_smoothing) + self.label_smoothing / num_classes
        log_p = F.log_softmax(logits, dim=1)
        per_class = -targets * (1 - log_p.exp()).pow(self.gamma) * log_p
        if self.weights is not None:
            per_class = per_class * self.weights
        return per_class.sum(dim=1).mean()


def build_loss(config, counts: np.ndarray) -> tuple[ClassificationLoss, np.ndarray | None]:
    """The criterion of a TrainConfig and the class weights it uses (None for plain CE)."""
    from ..data import class_weights

    weights = None if config.loss == "ce" else class_weights(counts, method=config.class_weights)
    gamma = config.focal_gamma if config.loss == "focal" else 0.0
    loss = ClassificationLoss(None if weights is None else torch.as_tensor(weights, dtype=torch.float32),
                              config.label_smoothing, gamma)
    return loss, weights
