"""Softmax Dice loss, one score per class over the whole batch, averaged over classes.

    dice_c = (2·Σ_i p_ic·t_ic + smooth) / (Σ_i p_ic + Σ_i t_ic + smooth)        loss = 1 − mean_c dice_c

p = softmax(logits), t = one-hot label, sums over the batch and every non-ignored pixel i. This is
FastSegFormer's `Dice_loss` with β = 1 (its (1+β²)·tp / ((1+β²)·tp + β²·fn + fp) is the line above), except
that ignored pixels are left out of Σ p as well (the reference counts their probability as false positives).
"""

from __future__ import annotations

from torch import Tensor, nn

from segkd.losses.registry import register_loss
from segkd.losses.target import probs_and_one_hot


@register_loss("dice")
class DiceLoss(nn.Module):
    def __init__(self, smooth: float = 1e-5, ignore_index: int = 255):
        super().__init__()
        self.smooth = smooth
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        probs, one_hot, valid = probs_and_one_hot(logits, target, self.ignore_index)  # B×K×H×W ×2, B×1×H×W
        probs = probs * valid
        dims = (0, 2, 3)
        inter = (probs * one_hot).sum(dims)  # K
        total = probs.sum(dims) + one_hot.sum(dims)  # K
        dice = (2 * inter + self.smooth) / (total + self.smooth)
        return 1 - dice.mean()
