"""FastSegFormer's neck and decoder blocks (Cai et al. 2024, caixiongjiang/FastSegFormer).

- `GlobalFeatureExtractor`: 1×1 channel reduction, linear bottlenecks, then a pyramid (MSP or PPM).
- `FeatureFusionModule` (FFM): the pyramid output upsampled to the stride-8 backbone map and summed with it.
- `FastSegFormerDecoder` (the decoder slot): GFE on stage 4 (`neck`), FFM with stage 2 (`fusion`).
- `SegHead` (the head slot): two depthwise-separable convs, dropout, 1×1 classifier, then the optional
  `ImageReconstructionBranch` (IRB), which refines the head output at half the input size with a shallow image
  path and upsamples ×2 to the input size.

Every bilinear resize here uses align_corners=True, as the reference does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segkd.models import layers
from segkd.models.layers import ConvBN, ConvBNReLU, DSConv, LinearBottleneck

resize = partial(layers.resize, align_corners=True)  # FastSegFormer's convention


class MultiScalePyramid(nn.Module):
    """MSP: four k×k ConvBNReLU branches (k = 1, 3, 5, 7, width in/4), each followed by a 1×1 ConvBNReLU;
    the input and the branches are concatenated and fused by a 1×1 ConvBNReLU. The spatial size is kept."""

    def __init__(self, in_chs: int, out_chs: int, kernel_sizes: Sequence[int] = (1, 3, 5, 7)):
        super().__init__()
        inter = in_chs // 4
        self.branches = nn.ModuleList(
            nn.Sequential(ConvBNReLU(in_chs, inter, k), ConvBNReLU(inter, inter, 1)) for k in kernel_sizes
        )
        self.out = ConvBNReLU(in_chs + inter * len(kernel_sizes), out_chs, 1)

    def forward(self, x: Tensor) -> Tensor:
        feats = [x] + [branch(x) for branch in self.branches]  # B×C×h×w, 4 × B×C/4×h×w
        return self.out(torch.cat(feats, dim=1))  # B×out×h×w


class PyramidPooling(nn.Module):
    """PPM: average-pool to each bin size, 1×1 ConvBNReLU (width in/4), resize back; fuse as MSP does."""

    def __init__(self, in_chs: int, out_chs: int, bins: Sequence[int] = (1, 2, 3, 6)):
        super().__init__()
        inter = in_chs // 4
        self.bins = tuple(bins)
        self.branches = nn.ModuleList(ConvBNReLU(in_chs, inter, 1) for _ in self.bins)
        self.out = ConvBNReLU(in_chs + inter * len(self.bins), out_chs, 1)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        feats = [x] + [resize(conv(F.adaptive_avg_pool2d(x, b)), size) for b, conv in zip(self.bins, self.branches)]
        return self.out(torch.cat(feats, dim=1))  # B×out×h×w


PYRAMIDS = {"msp": MultiScalePyramid, "ppm": PyramidPooling}


class GlobalFeatureExtractor(nn.Module):
    """1×1 reduction of the last backbone map, groups of linear bottlenecks (stride 1), then the pyramid.

    Args:
        in_chs: backbone stage-4 width.
        stages: (width, blocks) per bottleneck group, e.g. P ((256, 2),), E ((128, 3), (160, 3)).
        out_chs: pyramid output width.
        expansion: bottleneck expansion ratio t.
        pyramid: "msp" or "ppm".
    """

    def __init__(
        self, in_chs: int, stages: Sequence[tuple[int, int]], out_chs: int, expansion: int, pyramid: str
    ):
        super().__init__()
        width = stages[0][0]
        self.reduce = ConvBNReLU(in_chs, width, 1)
        groups = []
        for out_width, blocks in stages:
            groups.append(nn.Sequential(*(
                LinearBottleneck(width if i == 0 else out_width, out_width, expansion) for i in range(blocks)
            )))
            width = out_width
        self.stages = nn.Sequential(*groups)
        self.pyramid = PYRAMIDS[pyramid](width, out_chs)

    def forward(self, x: Tensor) -> Tensor:
        return self.pyramid(self.stages(self.reduce(x)))  # B×out×H/32×W/32


class FeatureFusionModule(nn.Module):
    """FFM: low = pyramid output resized to the high-resolution map, depthwise 3×3, 1×1 conv+BN;
    high = 1×1 conv+BN of the stride-8 backbone map; ReLU(high + low)."""

    def __init__(self, high_chs: int, low_chs: int, out_chs: int):
        super().__init__()
        self.low_dw = ConvBNReLU(low_chs, out_chs, 3, groups=low_chs)
        self.low_proj = ConvBN(out_chs, out_chs, 1, bias=True)
        self.high_proj = ConvBN(high_chs, out_chs, 1, bias=True)
        self.act = nn.ReLU(inplace=True)

    def forward(self, high: Tensor, low: Tensor) -> Tensor:
        low = self.low_proj(self.low_dw(resize(low, high.shape[-2:])))  # B×out×H/8×W/8 (×4 upsampling)
        return self.act(self.high_proj(high) + low)


class FastSegFormerDecoder(nn.Module):
    """The decoder slot: `neck` = GFE(stage 4) at H/32, `fusion` = FFM(stage 2, neck) at H/8."""

    def __init__(self, neck: GlobalFeatureExtractor, fusion: FeatureFusionModule):
        super().__init__()
        self.neck = neck
        self.fusion = fusion

    def forward(self, feats: Sequence[Tensor]) -> "OrderedDict[str, Tensor]":
        neck = self.neck(feats[3])  # B×N×H/32×W/32
        return OrderedDict(neck=neck, fusion=self.fusion(feats[1], neck))  # fusion: B×N×H/8×W/8


class SegHead(nn.Module):
    """Two DSConv blocks, Dropout(0.1), 1×1 classifier (the paper's figure draws a 3×3; the code is 1×1), then
    the IRB when given (`detail`): logits B×K×H/8×W/8, or `detail` B×32×H/2×W/2 and logits B×K×H×W."""

    def __init__(self, in_chs: int, out_chs: int, drop_rate: float = 0.1,
                 detail: "ImageReconstructionBranch | None" = None):
        super().__init__()
        self.dsconv1 = DSConv(in_chs, in_chs)
        self.dsconv2 = DSConv(in_chs, in_chs)
        self.drop = nn.Dropout(drop_rate)
        self.cls = nn.Conv2d(in_chs, out_chs, 1)
        self.detail = detail

    def forward(self, x: Tensor, image: Tensor) -> "Tensor | OrderedDict[str, Tensor]":
        out = self.cls(self.drop(self.dsconv2(self.dsconv1(x))))  # B×(32 | K)×H/8×W/8
        if self.detail is None:
            return out
        detail, logits = self.detail(image, out)
        return OrderedDict(detail=detail, logits=logits)


class ImageReconstructionBranch(nn.Module):
    """IRB ("cnn_branch"): at half the input size, head features + a 3×3 conv+BN of the image (no ReLU),
    a DSConv (`detail`), then ×2 bilinear upsampling and a 1×1 classifier to the input size.

    The reference hard-codes 112/224; here the half size follows the input.
    """

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        self.stem = ConvBN(3, width, 3)
        self.refine = DSConv(width, width)
        self.cls = nn.Conv2d(width, num_classes, 1)

    def forward(self, image: Tensor, feats: Tensor) -> tuple[Tensor, Tensor]:
        half = [s // 2 for s in image.shape[-2:]]
        detail = self.refine(resize(feats, half) + self.stem(resize(image, half)))  # B×32×H/2×W/2
        logits = self.cls(resize(detail, image.shape[-2:]))  # B×K×H×W
        return detail, logits
