"""Attention transfer (Zagoruyko & Komodakis 2017): match where the networks put their activation energy.

    Q(F) = vec(Σ_c |F_c|^p) / ‖vec(Σ_c |F_c|^p)‖₂          (one spatial attention map per sample, p = 2)
    L    = mean over the batch of ‖Q(F_s) − Q(F_t)‖₂

The paper's β/2 is the term's weight. Channels may differ (the map sums over them), so no adapter is needed;
the teacher is resized to the student's size.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from segkd.losses.kd.base import KDLoss
from segkd.losses.registry import register_loss


def attention_map(x: Tensor, p: float = 2.0) -> Tensor:
    """B×C×H×W -> B×HW: Σ_c |x|^p, flattened and L2-normalised per sample."""
    return F.normalize(x.abs().pow(p).sum(1).flatten(1), dim=1)


@register_loss("at")
class AttentionTransferLoss(KDLoss):
    """mean_b ‖Q(F_s) − Q(F_t)‖₂ with Q the normalised map Σ_c |F_c|^p."""

    same_channels = False

    def __init__(self, p: float = 2.0):
        super().__init__()
        self.p = p

    def pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        return (attention_map(student, self.p) - attention_map(teacher, self.p)).norm(dim=1).mean()
