"""NFD: FastSegFormer's normalized feature distillation (Cai et al. 2024, spec fastsegformer.md §3).

Paper (`mode: paper`, the default):
    L = Σ_pairs ‖Normal(F_t) − Normal(F_s')‖₂ / (W_s·H_s)
  - F_s' = a learned 1×1 conv (with bias) from the student's channels to the teacher's, trained with the
    student (lr × distill.adapter_lr_mult), built from the tap shapes;
  - F_t is bilinearly resized (align_corners=True) to the student's H_s×W_s;
  - Normal(F) = (F − mean) / sqrt(var + eps), per sample and channel over (H, W) (population variance);
  - ‖·‖₂ is the L2 norm (not squared) of one sample's whole C×H×W difference, averaged over the batch.

Reference (`mode: reference`), what `NFD_loss_after_conv1x1` in the released code computes:
  - only the last pair counts (the code assigns instead of accumulating);
  - no normalisation (`Normal` is defined but never called);
  - the 1×1 conv is drawn afresh at every step and never trained, and only exists when the widths differ;
  - ‖·‖₂ is the Frobenius norm of the whole batch tensor (it grows with √B), divided by W_s·H_s.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from segkd.errors import ConfigError
from segkd.losses.kd.base import KDLoss
from segkd.losses.registry import register_loss


def channel_standardize(x: Tensor, eps: float = 1e-5) -> Tensor:
    """(x − mean) / sqrt(var + eps) per sample and channel over (H, W): B×C×H×W -> B×C×H×W."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
    return (x - mean) / (var + eps).sqrt()


@register_loss("nfd")
class NFDLoss(KDLoss):
    """Σ over pairs of ‖Normal(F_t) − Normal(adapter(F_s))‖₂ / (W_s·H_s) (see the module docstring)."""

    align_corners = True  # the reference (e004293) resizes the teacher's maps with align_corners=True

    def __init__(self, mode: Literal["paper", "reference"] = "paper", eps: float = 1e-5):
        super().__init__()
        if mode not in ("paper", "reference"):
            raise ConfigError(f"nfd: mode='{mode}' is not 'paper' or 'reference'")
        self.mode, self.eps = mode, eps
        self.adapter = "conv1x1" if mode == "paper" else "random_conv1x1_if_needed"
        self.pair_reduction = "sum" if mode == "paper" else "last"

    def pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:  # B×C_t×h×w each
        area = student.shape[-2] * student.shape[-1]
        if self.mode == "reference":
            return (teacher - student).norm() / area
        diff = channel_standardize(teacher, self.eps) - channel_standardize(student, self.eps)
        return diff.flatten(1).norm(dim=1).mean() / area
