"""Focal loss (Lin et al. 2017) on the softmax of each pixel.

    FL_i = −α · (1 − p_i)^γ · log p_i,  p_i = softmax(logits_i)[y_i]        loss = mean over non-ignored pixels

Defaults α = 0.5, γ = 2 are FastSegFormer's `Focal_Loss`. The reference averages over every pixel, ignored
ones included (they add 0); segkd averages over the non-ignored pixels only.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from segkd.losses.registry import register_loss
from segkd.losses.resize import resize_to


@register_loss("focal")
class FocalLoss(nn.Module):
    def __init__(self, alpha: float = 0.5, gamma: float = 2.0, ignore_index: int = 255):
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = resize_to(logits, target.shape[-2:]).float()  # B×K×H×W
        target = target.long()
        ce = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")  # B×H×W, −log p
        valid = target != self.ignore_index
        p = (-ce).exp()
        focal = self.alpha * (1 - p).pow(self.gamma) * ce
        return (focal * valid).sum() / valid.sum().clamp_min(1)
