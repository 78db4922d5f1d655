"""Logit distillation (Hinton et al. 2015) and the one softened KL every KD loss in segkd uses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from segkd.losses.kd.base import KDLoss
from segkd.losses.registry import register_loss


def softened_kl(student: Tensor, teacher: Tensor, temperature: float = 1.0, dim: int = 1) -> Tensor:
    """KL(softmax(t/τ) ‖ softmax(s/τ)) summed over `dim`: one value per remaining position.

    The teacher's distribution is the target (the usual KD direction, `F.kl_div(log q_s, q_t)`).
    """
    log_s = F.log_softmax(student / temperature, dim=dim)
    log_t = F.log_softmax(teacher / temperature, dim=dim)
    return (log_t.exp() * (log_t - log_s)).sum(dim)


@register_loss("kl")
class LogitKLLoss(KDLoss):
    """Pixel-wise logit KD: τ² · mean over (b, h, w) of Σ_c q_t log(q_t / q_s), q = softmax(z / τ) over classes.

    Student and teacher logits need the same number of classes; the teacher is resized to the student's size.
    """

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature

    def pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:  # B×K×h×w each
        return self.temperature**2 * softened_kl(student, teacher, self.temperature, dim=1).mean()
