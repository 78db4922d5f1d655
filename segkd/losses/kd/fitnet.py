"""FitNets hints (Romero et al. 2015): a learned regressor maps the student's feature to the teacher's.

    L = mean over (b, c, h, w) of (W_r * F_s − F_t)²

W_r is a 1×1 conv from the student's width to the teacher's (built from the tap shapes, trained with the
student); the teacher is resized to the student's size.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from segkd.losses.kd.base import KDLoss
from segkd.losses.registry import register_loss


@register_loss("fitnet")
class FitNetLoss(KDLoss):
    """MSE between the adapted student feature and the teacher feature."""

    adapter = "conv1x1"

    def __init__(self):
        super().__init__()

    def pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        return F.mse_loss(student, teacher)
