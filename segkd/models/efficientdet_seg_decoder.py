"""EfficientDet-seg's decoder blocks: the BiFPN (Tan et al., EfficientDet, CVPR 2020) as the
EfficientDet_Segmentation repository builds it, and the two fusions that feed its heads.

Levels are named by their stride (P_l at 1/2^l): the backbone's stride-4/8/16 maps give P2, P3, P4; the first
BiFPN layer adds P5 (3×3 conv + BN + pool) and P6 (pool only). The repository calls these five maps P3..P7.

- `SeparableConv`: depthwise 3×3 (no bias) → pointwise 1×1 (bias); no BN, no activation.
- `FusionNode`: SiLU(sum of its inputs) → SeparableConv. Plain sum by default (the repository's); with
  `weighted=True` the paper's fast normalised fusion, Σ relu(w_i)·x_i / (Σ relu(w_j) + 1e-4).
- `BiFPNLayer`: top-down P6 → P2, then bottom-up P2 → P6; nearest ×2 upsampling, 3×3/2 max-pool with TF "same"
  padding filled with zeros (not -inf). The first layer projects the backbone maps with conv1×1 + BN, and its
  bottom-up pass takes second projections of P3 and P4 (separate weights).
- `P2Fusion`: two ConvTranspose2d(k2, s2) + BN + SiLU on P2 → full resolution (the shipped head's input).
- `TopDownFusion`: from P6 down to P2, ConvTranspose2d(k2, s2) + BN + SiLU, then concat with the next finer
  level (the repository's commented-out `headFPN`) → stride 4.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from timm.layers.padding import pad_same
from torch import Tensor, nn

from segkd.models.layers import ConvBN

LEVELS = ("p2", "p3", "p4", "p5", "p6")  # strides 4, 8, 16, 32, 64


class SeparableConv(nn.Sequential):
    """Depthwise 3×3 (no bias) → pointwise 1×1 with bias."""

    def __init__(self, in_chs: int, out_chs: int | None = None):
        out_chs = out_chs or in_chs
        super().__init__(OrderedDict(
            dw=nn.Conv2d(in_chs, in_chs, 3, padding=1, groups=in_chs, bias=False),
            pw=nn.Conv2d(in_chs, out_chs, 1),
        ))


class FusionNode(nn.Module):
    """SiLU(fused inputs) → SeparableConv; the inputs are summed, or fast-normalised-weighted."""

    def __init__(self, num_inputs: int, channels: int, weighted: bool = False):
        super().__init__()
        self.weights = nn.Parameter(torch.ones(num_inputs)) if weighted else None
        self.conv = SeparableConv(channels)

    def forward(self, *inputs: Tensor) -> Tensor:
        if self.weights is not None:
            w = F.relu(self.weights)
            inputs = [wi * x for wi, x in zip(w / (w.sum() + 1e-4), inputs)]
        fused = sum(inputs[1:], inputs[0])  # B×C×h×w, summed left to right as the repository does
        return self.conv(F.silu(fused))


def upsample(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")  # B×C×2h×2w


def downsample(x: Tensor) -> Tensor:
    """3×3 / 2 max-pool after TF "same" padding with zeros (the repository's `MaxPool2dSamePadding`)."""
    return F.max_pool2d(pad_same(x, [3, 3], [2, 2], value=0.0), 3, 2)  # B×C×⌈h/2⌉×⌈w/2⌉


class BiFPNLayer(nn.Module):
    """One BiFPN layer over P2..P6; `in_chs` (the backbone's P2/P3/P4 widths) makes it the first layer."""

    def __init__(self, channels: int, in_chs: tuple[int, int, int] | None = None, weighted: bool = False):
        super().__init__()
        self.from_backbone = in_chs is not None
        if self.from_backbone:
            c2, c3, c4 = in_chs
            self.p2_in = ConvBN(c2, channels, bias=True)
            self.p3_in = ConvBN(c3, channels, bias=True)
            self.p3_in2 = ConvBN(c3, channels, bias=True)  # the bottom-up pass's own projection
            self.p4_in = ConvBN(c4, channels, bias=True)
            self.p4_in2 = ConvBN(c4, channels, bias=True)
            self.p5_in = ConvBN(c4, channels, 3, bias=True)  # then pooled: P5, pooled again: P6
        node = lambda n: FusionNode(n, channels, weighted)  # noqa: E731
        self.p5_td, self.p4_td, self.p3_td, self.p2_out = node(2), node(2), node(2), node(2)
        self.p3_out, self.p4_out, self.p5_out, self.p6_out = node(3), node(3), node(3), node(2)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        if self.from_backbone:
            c2, c3, c4 = feats  # B×C_i×H/4, H/8, H/16
            p2, p3, p4 = self.p2_in(c2), self.p3_in(c3), self.p4_in(c4)
            p5 = downsample(self.p5_in(c4))  # B×W×H/32×W/32
            p6 = downsample(p5)  # B×W×H/64×W/64
        else:
            p2, p3, p4, p5, p6 = feats
        p5_td = self.p5_td(p5, upsample(p6))
        p4_td = self.p4_td(p4, upsample(p5_td))
        p3_td = self.p3_td(p3, upsample(p4_td))
        p2_out = self.p2_out(p2, upsample(p3_td))
        if self.from_backbone:
            p3, p4 = self.p3_in2(c3), self.p4_in2(c4)
        p3_out = self.p3_out(p3, p3_td, downsample(p2_out))
        p4_out = self.p4_out(p4, p4_td, downsample(p3_out))
        p5_out = self.p5_out(p5, p5_td, downsample(p4_out))
        p6_out = self.p6_out(p6, downsample(p5_out))
        return [p2_out, p3_out, p4_out, p5_out, p6_out]  # B×W×H/s×W/s, s = 4..64


class UpConvBNAct(nn.Sequential):
    """ConvTranspose2d(k2, s2) + BN + SiLU: ×2 resolution."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__(OrderedDict(
            conv=nn.ConvTranspose2d(in_chs, out_chs, 2, stride=2), bn=nn.BatchNorm2d(out_chs), act=nn.SiLU(),
        ))


class P2Fusion(nn.Sequential):
    """P2 (stride 4) → two ×2 transposed convs → full resolution, same width."""

    def __init__(self, channels: int):
        super().__init__(OrderedDict(up1=UpConvBNAct(channels, channels), up2=UpConvBNAct(channels, channels)))

    def forward(self, levels: list[Tensor]) -> Tensor:
        return super().forward(levels[0])  # B×W×H×W


class TopDownFusion(nn.Module):
    """P6 → ×2 → concat P5 → ... → concat P2: B×(width + W)×H/4×W/4."""

    def __init__(self, channels: int, width: int, num_levels: int = len(LEVELS)):
        super().__init__()
        self.ups = nn.ModuleList(
            UpConvBNAct(channels if i == 0 else channels + width, width) for i in range(num_levels - 1)
        )

    def forward(self, levels: list[Tensor]) -> Tensor:
        y, *finer = levels[::-1]
        for up, skip in zip(self.ups, finer):
            y = torch.cat([up(y), skip], dim=1)
        return y


class BiFPNDecoder(nn.Module):
    """BiFPN layers, then a fusion; returns the taps `p2`..`p6` and `fusion` (the head's input)."""

    def __init__(self, in_chs: tuple[int, int, int], channels: int, num_layers: int, fusion: nn.Module,
                 weighted: bool = False):
        super().__init__()
        self.layers = nn.ModuleList(
            BiFPNLayer(channels, tuple(in_chs) if i == 0 else None, weighted) for i in range(num_layers)
        )
        self.fusion = fusion

    def forward(self, feats: list[Tensor]) -> "OrderedDict[str, Tensor]":
        for layer in self.layers:
            feats = layer(feats)
        return OrderedDict(zip(LEVELS, feats), fusion=self.fusion(feats))


class SeparableHead(nn.Module):
    """`num_layers` × [SeparableConv + BN + SiLU] of `width`, then a separable classifier to K classes."""

    def __init__(self, in_chs: int, width: int, num_layers: int, num_classes: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(OrderedDict(conv=SeparableConv(in_chs if i == 0 else width, width),
                                      bn=nn.BatchNorm2d(width), act=nn.SiLU()))
            for i in range(num_layers)
        )
        self.cls = SeparableConv(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.cls(x)  # B×K×H×W
