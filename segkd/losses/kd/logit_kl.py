"""Logit distillation (Hinton et al. 2015), the one softened KL every KD loss in segkd uses, and logit
standardisation (Sun et al., CVPR 2024), an option of `kl` and `pkl`.

Logit standardisation (`standardize: true`) z-scores each pixel's logits over the classes before the
temperature softmax, for the student and the teacher alike:

    Z(z) = (z − mean_c z) / (std_c z + 1e-7)        (std over the K classes, unbiased, as the paper's code)

so the student matches the teacher's logit *relations*, not their scale or offset: the loss is the same for
a·z + b (a > 0) as for z. The τ² factor stays.
"""

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


def standardize_logits(z: Tensor, dim: int = 1, eps: float = 1e-7) -> Tensor:
    """(z − mean) / (std + eps) over `dim` (the classes): B×K×H×W -> B×K×H×W (Sun et al. 2024)."""
    return (z - z.mean(dim, keepdim=True)) / (z.std(dim, keepdim=True) + eps)


@register_loss("kl")
class LogitKLLoss(KDLoss):
    """Pixel-wise logit KD: τ² · mean over (b, h, w) of Σ_c q_t log(q_t / q_s), q = softmax(z / τ) over classes.

    Student and teacher logits need the same number of classes; the teacher is resized to the student's size.
    `standardize: true` z-scores both logits over the classes first (see the module docstring).
    """

    def __init__(self, temperature: float = 1.0, standardize: bool = False):
        super().__init__()
        self.temperature, self.standardize = temperature, standardize

    def pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:  # B×K×h×w each
        if self.standardize:
            student, teacher = standardize_logits(student), standardize_logits(teacher)
        return self.temperature**2 * softened_kl(student, teacher, self.temperature, dim=1).mean()
