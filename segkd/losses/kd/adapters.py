"""Adapters that map a student tap to its teacher tap's width, built from the two shapes.

Nobody types a channel count: the Distiller reads every paired tap's shape in one dry run and calls
`build_adapter(kind, student_shape, teacher_shape)`. Maps are B×C×H×W, tokens B×N×C.

Kinds:
  none                     Identity
  conv1x1                  a learned 1×1 conv (a Linear on tokens) to the teacher's channels (FitNets, NFD,
                           SEKD's patch-embedding projections)
  conv1x1_if_needed        the same, or Identity when the widths already agree (CWD on features)
  random_conv1x1_if_needed the FastSegFormer reference NFD: a 1×1 conv drawn afresh at every call, never
                           trained, only when the widths differ
  fef                      SEKD's Feature Enhancement and Fusion block (conv-BN-ReLU, CBAM, conv-BN, CBAM)
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segkd.errors import ConfigError

ADAPTER_KINDS = ("none", "conv1x1", "conv1x1_if_needed", "random_conv1x1_if_needed", "fef")


class ChannelAttention(nn.Module):
    """CBAM channel gate: sigmoid(MLP(avgpool x) + MLP(maxpool x)), one MLP (1×1 convs C -> C/r -> C) shared."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:  # B×C×H×W -> B×C×1×1 gate
        return (self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1))).sigmoid()


class SpatialAttention(nn.Module):
    """CBAM spatial gate: sigmoid(conv7×7([mean over C, max over C]))."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # B×C×H×W -> B×1×H×W gate
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)  # B×2×H×W
        return self.conv(pooled).sigmoid()


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al. 2018): x·CA(x), then x·SA(x)."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        x = x * self.channel(x)
        return x * self.spatial(x)


class FeatureEnhancement(nn.Module):
    """SEKD's FEF adapter for one stage (spec sekd.md §2.1), B×C_s×H×W -> B×C_t×H×W.

    Conv1×1(C_s->mid, no bias)+BN+ReLU -> CBAM(mid) -> Conv3×3(mid->C_t, no bias)+BN -> CBAM(C_t).
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int = 64):
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels), nn.ReLU(inplace=True)
        )
        self.attn_mid = CBAM(mid_channels)
        self.expand = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.attn_out = CBAM(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.attn_mid(self.reduce(x))  # B×mid×H×W
        return self.attn_out(self.expand(x))  # B×C_t×H×W


class RandomConv1x1(nn.Module):
    """The FastSegFormer reference NFD adapter: a fresh default-initialised 1×1 conv (with bias) at every call.

    It holds no parameters, so the optimizer never sees it: the reference builds a new, untrained conv per
    step (`NFD_loss_after_conv1x1`), and this reproduces that.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: Tensor) -> Tensor:
        conv = nn.Conv2d(self.in_channels, self.out_channels, 1).to(device=x.device, dtype=x.dtype)
        return F.conv2d(x, conv.weight.detach(), conv.bias.detach())


def channels_of(shape: Sequence[int]) -> int:
    """Channel count of a map (B×C×H×W) or token (B×N×C) shape."""
    return int(shape[1] if len(shape) == 4 else shape[-1])


def build_adapter(
    kind: str, student_shape: Sequence[int], teacher_shape: Sequence[int], mid_channels: int = 64
) -> nn.Module:
    """The adapter of `kind` from the student tap's width to the teacher tap's width."""
    if kind not in ADAPTER_KINDS:
        raise ConfigError(f"unknown adapter kind '{kind}' (known: {', '.join(ADAPTER_KINDS)})")
    c_s, c_t = channels_of(student_shape), channels_of(teacher_shape)
    tokens = len(student_shape) == 3
    if kind == "none" or (kind.endswith("_if_needed") and c_s == c_t):
        return nn.Identity()
    if kind in ("conv1x1", "conv1x1_if_needed"):
        return nn.Linear(c_s, c_t) if tokens else nn.Conv2d(c_s, c_t, 1)
    if tokens:
        raise ConfigError(f"adapter '{kind}' needs a B×C×H×W student tap, got tokens of shape {tuple(student_shape)}")
    if kind == "random_conv1x1_if_needed":
        return RandomConv1x1(c_s, c_t)
    return FeatureEnhancement(c_s, c_t, mid_channels)
