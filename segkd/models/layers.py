"""Building blocks shared by segkd's model families.

Every block is a small `nn.Sequential` with named children, so state-dict keys say what they are
(`x.conv.weight`, `x.bn.running_mean`, `x.dw.conv.weight`) and families can map foreign layouts onto them.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn


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
