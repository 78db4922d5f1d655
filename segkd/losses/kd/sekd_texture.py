"""SEKD's texture loss on patch embeddings (spec sekd.md §2.5; `TextureDistillationLoss`).

Applied to each stage's patch embedding (after its LayerNorm, before the blocks): the student's goes through
a learned linear projection to the teacher's width (`adapter: conv1x1`, a Linear on B×N×C tokens, a 1×1 conv
on maps), token grids are read as square maps. Per stage pair:

  structural  = Σ over the pyramid levels [lap0, lap1, low2] of MSE(level_s, level_t), where
                lap_k = cur − blur(cur), cur <- avgpool2(blur(cur)), blur = depthwise 5×5 Gaussian (σ = 1,
                normalised, zero padding 2); a map smaller than 2×2 is not pooled further;
  statistical = MSE of the local-standardised 4×4 patches (unfold k=4, stride 2, pad 2; each patch's 16 values
                per channel -> (p − mean) / (std + 1e-6), std unbiased).

L = mean over stages of (structural + statistical); weight 1 in every SEKD preset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from segkd.losses.kd.base import KDLoss
from segkd.losses.registry import register_loss


def gaussian_kernel(size: int = 5, sigma: float = 1.0) -> Tensor:
    """size×size Gaussian, summing to 1."""
    ax = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    k = g[:, None] * g[None, :]
    return k / k.sum()


def laplacian_pyramid(x: Tensor, kernel: Tensor, levels: int = 2) -> list[Tensor]:
    """[lap_0, ..., lap_{levels-1}, low]: band-pass maps and the final low-pass map of B×C×H×W `x`."""
    c = x.shape[1]
    weight = kernel.to(x)[None, None].expand(c, 1, *kernel.shape)  # C×1×k×k depthwise
    pad = kernel.shape[-1] // 2
    out, cur = [], x
    for _ in range(levels):
        blurred = F.conv2d(cur, weight, padding=pad, groups=c)
        out.append(cur - blurred)
        cur = F.avg_pool2d(blurred, 2) if min(blurred.shape[-2:]) >= 2 else blurred
    return out + [cur]


def local_standardized_patches(x: Tensor, size: int = 4, stride: int = 2, eps: float = 1e-6) -> Tensor:
    """B×C×H×W -> B×C×size²×L patches, each standardised over its size² values (unbiased std)."""
    b, c = x.shape[:2]
    patches = F.unfold(x, size, padding=size // 2, stride=stride).view(b, c, size * size, -1)
    mean = patches.mean(2, keepdim=True)
    std = patches.std(2, keepdim=True)
    return (patches - mean) / (std + eps)


@register_loss("sekd_texture")
class SEKDTextureLoss(KDLoss):
    """Laplacian-pyramid MSE + local-statistics MSE on projected patch embeddings, averaged over stages."""

    adapter = "conv1x1"
    pair_reduction = "mean"

    def __init__(self, levels: int = 2, sigma: float = 1.0, patch: int = 4, stride: int = 2):
        super().__init__()
        self.levels, self.patch, self.stride = levels, patch, stride
        self.register_buffer("kernel", gaussian_kernel(5, sigma), persistent=False)

    def pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        pyr_s = laplacian_pyramid(student, self.kernel, self.levels)
        pyr_t = laplacian_pyramid(teacher, self.kernel, self.levels)
        structural = sum(F.mse_loss(s, t) for s, t in zip(pyr_s, pyr_t))
        statistical = F.mse_loss(
            local_standardized_patches(student, self.patch, self.stride),
            local_standardized_patches(teacher, self.patch, self.stride),
        )
        return structural + statistical
