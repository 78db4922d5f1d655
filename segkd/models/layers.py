"""Building blocks shared by segkd's model families: every family imports them from here, none re-writes one.

Every block is a small `nn.Sequential` with named children, so state-dict keys say what they are
(`x.conv.weight`, `x.bn.running_mean`, `x.dw.conv.weight`) and families can map foreign layouts onto them.

- segkd's own: `ConvBN`, `ConvBNReLU` (conv-BN-act), `DSConv` (depthwise-separable), `LinearBottleneck`
  (MobileNetV2), `ConvClassifier` (the segmentation head), `resize` (bilinear, either corner convention),
  `init_conv_bn_normal_`.
- From timm, the same layers its backbones use (so a family's neck matches a timm trunk exactly):
  `create_conv2d` / `Conv2dSame` (TF "same" padding, static or dynamic), `SqueezeExcite`, `Hardswish`,
  `Hardsigmoid`, and `mobilenetv3_block` (timm's MobileNetV3 `InvertedResidual` with its own SE).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

import torch.nn.functional as F
from timm.layers import Conv2dSame, SqueezeExcite, create_conv2d
from timm.models._efficientnet_blocks import InvertedResidual
from timm.models._efficientnet_blocks import SqueezeExcite as BlockSqueezeExcite
from torch import Tensor, nn
from torch.nn import Hardsigmoid, Hardswish

__all__ = [
    "ConvBN", "ConvBNReLU", "ConvClassifier", "Conv2dSame", "DSConv", "Hardsigmoid", "Hardswish", "InvertedResidual",
    "LinearBottleneck", "SqueezeExcite", "create_conv2d", "init_conv_bn_normal_", "mobilenetv3_block", "resize",
]


class ConvBN(nn.Sequential):
    """Conv2d (same padding) + BatchNorm2d."""

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, groups: int = 1, bias: bool = False
    ):
        super().__init__(OrderedDict(
            conv=nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=bias),
            bn=nn.BatchNorm2d(out_chs),
        ))


class ConvBNReLU(ConvBN):
    """Conv2d (same padding) + BatchNorm2d + ReLU."""

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, groups: int = 1, bias: bool = False
    ):
        super().__init__(in_chs, out_chs, kernel_size, stride, groups, bias)
        self.add_module("act", nn.ReLU(inplace=True))


class DSConv(nn.Sequential):
    """Depthwise-separable conv: depthwise 3×3 + BN + ReLU, then pointwise 1×1 + BN + ReLU (no biases)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__(OrderedDict(
            dw=ConvBNReLU(in_chs, in_chs, 3, stride, groups=in_chs),
            pw=ConvBNReLU(in_chs, out_chs, 1),
        ))


class LinearBottleneck(nn.Module):
    """MobileNetV2 inverted residual: 1×1 expand + ReLU, depthwise 3×3 + ReLU, linear 1×1 projection.

    The input is added back when the stride is 1 and the widths match; there is no activation at the end.
    """

    def __init__(self, in_chs: int, out_chs: int, expansion: int, stride: int = 1):
        super().__init__()
        mid = in_chs * expansion
        self.expand = ConvBNReLU(in_chs, mid, 1)
        self.dw = ConvBNReLU(mid, mid, 3, stride, groups=mid)
        self.project = ConvBN(mid, out_chs, 1)
        self.use_residual = stride == 1 and in_chs == out_chs

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.dw(self.expand(x)))  # B×out×H/s×W/s
        return x + out if self.use_residual else out


def mobilenetv3_block(
    in_chs: int, mid_chs: int, out_chs: int, kernel_size: int, stride: int, act_layer: type[nn.Module],
    se_gate: type[nn.Module] | None = None,
) -> InvertedResidual:
    """MobileNetV3 inverted residual (timm's): 1×1 expand + act (even when `mid_chs == in_chs`), k×k depthwise
    + act, [SE: avg-pool, 1×1 to mid/4 + ReLU, 1×1 back + `se_gate`], linear 1×1 projection; the input is added
    back when the stride is 1 and the widths match. Keys: conv_pw, bn1, conv_dw, bn2, se.conv_reduce,
    se.conv_expand, conv_pwl, bn3."""
    se = partial(BlockSqueezeExcite, rd_ratio=0.25, force_act_layer=nn.ReLU, gate_layer=se_gate) if se_gate else None
    return InvertedResidual(in_chs, out_chs, kernel_size, stride, exp_ratio=mid_chs / in_chs, act_layer=act_layer,
                            se_layer=se)  # timm rounds mid to a multiple of 8: PP-MobileSeg's widths already are


def resize(x: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
    """Bilinear resize to `size` (H, W); `align_corners` as the family's reference code has it."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


class ConvClassifier(nn.Conv2d):
    """The segmentation head: [×`upsample` bilinear] → [Dropout2d] → k×k conv to K classes (with bias).

    A plain `nn.Conv2d` underneath, so its state-dict keys are `weight` and `bias` (the papers' layouts).
    """

    def __init__(self, in_chs: int, num_classes: int, kernel_size: int = 1, dropout: float = 0.0,
                 upsample: int = 1):
        super().__init__(in_chs, num_classes, kernel_size, padding=kernel_size // 2)
        self.dropout = dropout
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=float(self.upsample), mode="bilinear", align_corners=False)
        x = F.dropout2d(x, self.dropout, self.training) if self.dropout else x
        return super().forward(x)  # B×K×h×w


def init_conv_bn_normal_(module: nn.Module, std: float = 0.02) -> None:
    """The bubbliiiing/unet-pytorch `weights_init` that FastSegFormer and its teacher train from.

    Every module whose class name contains "Conv" and that owns a `.weight` gets N(0, std); every BatchNorm2d
    gets weight N(1, 0.02) and bias 0. Conv biases, LayerNorm and GroupNorm are left as they are.
    """
    for m in module.modules():
        name = type(m).__name__
        if "Conv" in name and isinstance(getattr(m, "weight", None), Tensor):
            nn.init.normal_(m.weight, 0.0, std)
        elif "BatchNorm2d" in name:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.constant_(m.bias, 0.0)
