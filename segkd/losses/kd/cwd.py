"""Channel-wise distillation (Shu et al. 2021), with MMRazor's normalisation (`ChannelWiseDivergence`).

    L = τ² / (N·C) · Σ_{n,c} Σ_{hw} φ(T_c) log(φ(T_c) / φ(S_c)),   φ = softmax over H×W of x / τ

Each channel becomes a spatial distribution; the student's is pulled towards the teacher's. On logits the
class counts must agree; on features the student gets a learned 1×1 conv when the widths differ. The teacher
is bilinearly resized to the student's size (MMRazor asserts equal sizes instead).
"""

from __future__ import annotations

from torch import Tensor

from segkd.losses.kd.base import KDLoss
from segkd.losses.kd.logit_kl import softened_kl
from segkd.losses.registry import register_loss


@register_loss("cwd")
class ChannelWiseDivergence(KDLoss):
    """τ²/(N·C) · Σ KL(softmax_HW(t/τ) ‖ softmax_HW(s/τ)) over samples and channels."""

    adapter = "conv1x1_if_needed"

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature

    def pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:  # B×C×h×w each
        n, c = student.shape[:2]
        kl = softened_kl(student.flatten(2), teacher.flatten(2), self.temperature, dim=2)  # N×C
        return self.temperature**2 * kl.sum() / (n * c)
