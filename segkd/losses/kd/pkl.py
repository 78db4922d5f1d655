"""P&KL: FastSegFormer's pixel-wise logit distillation (Cai et al. 2024, spec fastsegformer.md §3).

Paper: L = (1 / (W_s·H_s)) · (k1·t²·Σ_i KL(q_i^s, q_i^t) + (1 − k1)·Σ_i MSE(p_i^s, p_i^t)), t = 2, k1 = 0.5,
i running over the W_s×H_s pixels of the student's logits. segkd reads it as (`mode: paper`, the default):
  q_i = softmax(z_i / t) over the K classes at pixel i (the softened class distribution);
  KL(q_i^s, q_i^t) = Σ_c q_t log(q_t / q_s), the teacher as target (what the reference computes);
  p_i = softmax(z_i), the plain class probabilities (the paper names them apart from the softened q);
  MSE = mean over the K classes.
So `mode: paper` = k1·t²·mean_{b,i} KL_i + (1 − k1)·mean_{b,c,i} (p_s − p_t)².

`mode: reference` is what `kl_pixel_loss` computes: the same KL term, and an MSE on the raw logits z (mean over
all elements) divided by W_s·H_s once more, which makes it ~5·10⁴ times smaller at 224×224 (negligible).
Why not the raw-logit MSE without that division: it pulls the student's logit scale to a confident teacher's
and swamps the hard-label loss. On the synthetic oranges (benchmarks/kd_gain.py budget, SegFormer-B1 teacher
trained 120 epochs, B0 student) 0.25·MSE(z_s, z_t) alone took the student from 34.1 to 25.7 val mIoU.
In both modes the teacher's logits are bilinearly resized (align_corners=True) to the student's size.

`standardize: true` (logit standardisation, Sun et al. 2024; see `logit_kl`) z-scores both logits over the classes
before anything else, so the KL and the MSE both see standardised logits (not in the paper's recipe).
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from segkd.errors import ConfigError
from segkd.losses.kd.base import KDLoss
from segkd.losses.kd.logit_kl import softened_kl, standardize_logits
from segkd.losses.registry import register_loss


@register_loss("pkl")
class PixelKLLoss(KDLoss):
    """P&KL: k1·t²·KL(q_t ‖ q_s) + (1 − k1)·MSE(p_s, p_t), per pixel, averaged (see the module docstring)."""

    align_corners = True  # the reference resizes the teacher's logits with align_corners=True

    def __init__(self, temperature: float = 2.0, k1: float = 0.5, mode: Literal["paper", "reference"] = "paper",
                 standardize: bool = False):
        super().__init__()
        if mode not in ("paper", "reference"):
            raise ConfigError(f"pkl: mode='{mode}' is not 'paper' or 'reference'")
        self.temperature, self.k1, self.mode, self.standardize = temperature, k1, mode, standardize

    def pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:  # B×K×h×w logits each
        if self.standardize:
            student, teacher = standardize_logits(student), standardize_logits(teacher)
        t = self.temperature
        kl = softened_kl(student, teacher, t, dim=1).mean()  # mean over b, h, w of Σ_c
        if self.mode == "paper":
            mse = F.mse_loss(student.softmax(1), teacher.softmax(1))  # probabilities, mean over b, c, h, w
        else:
            mse = F.mse_loss(student, teacher) / (student.shape[-2] * student.shape[-1])  # raw logits, / (W·H)
        return self.k1 * t**2 * kl + (1 - self.k1) * mse
