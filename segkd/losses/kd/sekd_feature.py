"""SEKD's feature losses (Li et al., Agriculture 2025; spec sekd.md §2.1-2.4), one per paper variant.

Every stage's student map goes through its own FEF adapter (conv1×1-BN-ReLU -> CBAM -> conv3×3-BN -> CBAM,
mid width 64, to the teacher's width; `adapters.FeatureEnhancement`), then meets the teacher's map of that
stage. Each loss is averaged over the configured stage pairs. Which loss is which paper variant is the
spec's inference (the repo never says):

  sekd_align    SEKD      (`FeatureAlignmentLoss`, weight 0.2): MSE of both maps bilinearly downsampled ×0.25
  sekd_masked   SEKD-SU   (`SelfSupervisedDistillationLoss`, weight 0.5): MSE(F_s·M, F_t), M zero on one random
                           0.3H×0.3W box per sample ("feature reconstruction")
  sekd_context  SEKD-CT   (`MultiScaleContextAlignmentDistillationLoss`, weight 0.5): MSE(F_s, F_t) plus the MSE
                           of the column-normalised channel Gram matrices ("feature relationship/context")
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from segkd.losses.kd.base import KDLoss
from segkd.losses.registry import register_loss
from segkd.losses.resize import resize_to


class SEKDFeatureLoss(KDLoss):
    """Common part: FEF adapters (mid width `mid_channels`), mean over the stage pairs."""

    adapter = "fef"
    pair_reduction = "mean"

    def __init__(self, mid_channels: int = 64):
        super().__init__()
        self.mid_channels = mid_channels

    def adapter_options(self) -> dict:
        return {"mid_channels": self.mid_channels}


def channel_gram(x: Tensor) -> Tensor:
    """B×C×H×W -> B×C×C: F·Fᵀ with F the B×C×HW reshaped map."""
    f = x.flatten(2)
    return f @ f.transpose(1, 2)


def random_box_mask(x: Tensor, ratio: float = 0.3) -> Tensor:
    """B×1×H×W ones with one zeroed int(ratio·H)×int(ratio·W) box per sample at a random top-left corner.

    The corner is uniform over h0 ∈ {0..H−mh−1}, w0 ∈ {0..W−mw−1}, as the reference draws it.
    """
    b, _, h, w = x.shape
    mh, mw = int(ratio * h), int(ratio * w)
    h0 = torch.randint(0, max(h - mh, 1), (b, 1), device=x.device)  # B×1
    w0 = torch.randint(0, max(w - mw, 1), (b, 1), device=x.device)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= h0) & (rows < h0 + mh)  # B×H
    in_cols = (cols >= w0) & (cols < w0 + mw)  # B×W
    box = in_rows[:, :, None] & in_cols[:, None, :]  # B×H×W
    return (~box).to(x.dtype).unsqueeze(1)


@register_loss("sekd_align")
class SEKDAlignLoss(SEKDFeatureLoss):
    """SEKD (base variant): MSE(down(F_s), down(F_t)), down = bilinear ×`scale` (0.25, align_corners=False)."""

    def __init__(self, mid_channels: int = 64, scale: float = 0.25):
        super().__init__(mid_channels)
        self.scale = scale

    def pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        size = (max(int(student.shape[-2] * self.scale), 1), max(int(student.shape[-1] * self.scale), 1))
        return F.mse_loss(resize_to(student, size), resize_to(teacher, size))


@register_loss("sekd_masked")
class SEKDMaskedLoss(SEKDFeatureLoss):
    """SEKD-SU: MSE(F_s·M, F_t), M one random zeroed box of `ratio`·H × `ratio`·W per sample (teacher unmasked)."""

    def __init__(self, mid_channels: int = 64, ratio: float = 0.3):
        super().__init__(mid_channels)
        self.ratio = ratio

    def pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        return F.mse_loss(student * random_box_mask(student, self.ratio), teacher)


@register_loss("sekd_context")
class SEKDContextLoss(SEKDFeatureLoss):
    """SEKD-CT: MSE(F_s, F_t) + MSE(n(G_s), n(G_t)), G the B×C×C channel Gram, n = L2-normalise along dim 1."""

    def pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        gram_s = F.normalize(channel_gram(student), p=2, dim=1)
        gram_t = F.normalize(channel_gram(teacher), p=2, dim=1)
        return F.mse_loss(student, teacher) + F.mse_loss(gram_s, gram_t)
