"""Pixel-wise cross-entropy with optional class weights and online hard example mining (OHEM).

    CE = Σ_i w_{y_i} · (−log p_{i,y_i}) / Σ_i w_{y_i}        over non-ignored pixels i (kept pixels with OHEM)

OHEM keeps the pixels whose true-class probability p_{i,y_i} is below `ohem_thresh`, and in any case the
`ohem_min_kept` hardest ones (lowest p_{i,y_i}, ties included): the rule of MMSegmentation's OHEM sampler
and PaddleSeg's OhemCrossEntropyLoss. `class_weights` (one per class) weight both sum and normaliser, as
`torch.nn.CrossEntropyLoss` does.
FastSegFormer uses plain CE (weights all one); PP-MobileSeg 0.8·CE + 0.2·Lovász.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segkd.losses.registry import register_loss
from segkd.losses.resize import resize_to


@register_loss("ce")
class CrossEntropyLoss(nn.Module):
    def __init__(
        self,
        class_weights: list[float] | None = None,
        ignore_index: int = 255,
        ohem_thresh: float | None = None,
        ohem_min_kept: int = 100_000,
    ):
        super().__init__()
        self.ignore_index = ignore_index
        self.ohem_thresh = ohem_thresh
        self.ohem_min_kept = ohem_min_kept
        weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = resize_to(logits, target.shape[-2:]).float()  # B×K×H×W
        target = target.long()
        pixel_ce = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")  # B×H×W
        valid = target != self.ignore_index
        labels = target.masked_fill(~valid, 0)
        w = self.class_weights[labels] if self.class_weights is not None else torch.ones_like(pixel_ce)
        keep = valid if self.ohem_thresh is None else valid & self._hard(logits, labels, valid)
        w = w * keep
        return (pixel_ce * w).sum() / w.sum().clamp_min(1e-12)

    @torch.no_grad()
    def _hard(self, logits: Tensor, labels: Tensor, valid: Tensor) -> Tensor:
        """B×H×W mask of the pixels OHEM keeps."""
        p_true = logits.softmax(dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)  # B×H×W
        p_valid = p_true[valid]
        if p_valid.numel() == 0:
            return valid
        keep = p_true < self.ohem_thresh
        if self.ohem_min_kept > 0:
            k = min(self.ohem_min_kept, p_valid.numel())
            keep |= p_true <= p_valid.kthvalue(k).values  # the k hardest (ties included)
        return keep
