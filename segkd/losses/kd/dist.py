"""DIST: knowledge distillation from a stronger teacher (Huang et al., NeurIPS 2022), on segmentation logits.

Pixels are the samples (the paper's segmentation setting): the B×K×h×w logits become N×K, N = B·h·w, and
Y = softmax(Z / τ) over the K classes. With the Pearson distance d(u, v) = 1 − ρ(u, v),

    ρ(u, v)   = <u − ū, v − v̄> / (‖u − ū‖·‖v − v̄‖ + 1e-8)
    L_inter   = (1/N) Σ_n d(Y_s[n, :], Y_t[n, :])        (each pixel's class distribution: inter-class relation)
    L_intra   = (1/K) Σ_k d(Y_s[:, k], Y_t[:, k])        (each class's probabilities across the batch's pixels:
                                                           intra-class relation)
    L         = τ² · (β·L_inter + γ·L_intra)

The paper uses τ = 1 and β = γ = 1 for segmentation (β = γ = 2 on ImageNet with strong training strategies).
Student and teacher need the same number of classes; the teacher is resized to the student's size.
"""

from __future__ import annotations

from torch import Tensor

from segkd.losses.kd.base import KDLoss
from segkd.losses.registry import register_loss


def pearson_correlation(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """ρ of the rows of `a` and `b` (N×D each) -> N: the cosine of the mean-centred rows."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


@register_loss("dist")
class DISTLoss(KDLoss):
    """τ²·(β·(1 − mean ρ over pixels) + γ·(1 − mean ρ over classes)), y = softmax(z/τ) (module docstring)."""

    def __init__(self, temperature: float = 1.0, beta: float = 1.0, gamma: float = 1.0):
        super().__init__()
        self.temperature, self.beta, self.gamma = temperature, beta, gamma

    def pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:  # B×K×h×w logits each
        k = student.shape[1]
        y_s = (student / self.temperature).softmax(1).movedim(1, -1).reshape(-1, k)  # N×K
        y_t = (teacher / self.temperature).softmax(1).movedim(1, -1).reshape(-1, k)
        inter = 1 - pearson_correlation(y_s, y_t).mean()
        intra = 1 - pearson_correlation(y_s.T, y_t.T).mean()
        return self.temperature**2 * (self.beta * inter + self.gamma * intra)
