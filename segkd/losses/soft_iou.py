"""EfficientDet-seg's global soft-IoU loss: one "micro" soft score over the whole batch and all classes.

    I = Σ p·t,  U = Σ p + Σ t − I,  loss = 1 − I / (U + 1e-8)

p = softmax(logits) and t = one-hot label (B×K×H×W), summed over batch, classes and pixels together (not a
per-class mean). EfficientDet_Segmentation trains with CE + soft-IoU, weight 1 each.

Ignored pixels: their one-hot row is all zero. The reference still adds their probability mass to Σ p, so
they act as false positives; segkd leaves them out unless `count_ignored=True` (exact reference behaviour).
"""

from __future__ import annotations

from torch import Tensor, nn

from segkd.losses.registry import register_loss
from segkd.losses.target import probs_and_one_hot


@register_loss("soft_iou")
class SoftIoULoss(nn.Module):
    def __init__(self, eps: float = 1e-8, ignore_index: int = 255, count_ignored: bool = False):
        super().__init__()
        self.eps = eps
        self.ignore_index = ignore_index
        self.count_ignored = count_ignored

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        probs, one_hot, valid = probs_and_one_hot(logits, target, self.ignore_index)  # B×K×H×W ×2, B×1×H×W
        if not self.count_ignored:
            probs = probs * valid
        inter = (probs * one_hot).sum()
        union = probs.sum() + one_hot.sum() - inter
        return 1 - inter / (union + self.eps)
