"""MobileNetV3-Large/Small + LR-ASPP, as fastseg builds them (Zhang 2020, ekzhang/fastseg @91238cd; head after
Howard et al., "Searching for MobileNetV3", 2019).

    image ─ MobileNetV3 trunk (timm tf_mobilenetv3_*_100, output stride 8) ─ stage1 (H/2) stage2 (H/4) stage3 (H/8)
    stage3 ─ LR-ASPP: ConvBNReLU(F) · σ(1×1 conv(AvgPool 49×49 / (16, 20))) ─ aspp                       (H/8)
    aspp ─ 1×1 conv ─ ×2 ─ cat 1×1(stage2 → 64) ─ ConvBNReLU ─ up4 ─ ×2 ─ cat 1×1(stage1 → 32)
         ─ ConvBNReLU ─ fusion ─ 1×1 classifier ─ logits                                               (H/2)

The trunk is timm's `tf_mobilenetv3_{large,small}_100` (the same layers and key names as geffnet's, which fastseg
uses; TF "same" padding, BN eps 1e-3) with its last two strided stages made atrous as fastseg does: the first
block of each loses its stride and every depthwise conv of those stages (and the final 1×1 ConvBNAct) gets dilation
2, then 4. `stage1..3` are fastseg's s2 / s4 / final maps: Large 16 / 24 / 960 channels, Small 16 / 16 / 576.
`use_aspp=True` swaps LR-ASPP for fastseg's DeepLabV3-style ASPP (1×1, 3×3 rates 12 and 36, image pooling).

Taps: `stage1`..`stage3`, `aspp` (B×F×H/8×W/8), `up4` (B×F×H/4×W/4), `fusion` (B×F×H/2×W/2), `logits` (H/2;
`forward` resizes to H×W, bilinear, align_corners=False).

The attention pool is fastseg's AvgPool2d(49, stride (16, 20)) wherever the stride-8 map is at least 49 per side
(inputs from 392 px), giving e.g. a 5×11 grid at 1024×2048 and 1×4 at 512×1024. fastseg fails below that; segkd
clips the window to the map instead, so a smaller side is averaged whole (a global pool in the limit).

Weights: `load_weights` takes fastseg's release files (`{"num_classes", "state_dict"}` with `module.trunk.early.0...`
keys, through `checkpoint_filter_fn`); `pretrained=True` loads the trunk's ImageNet weights from timm's hub
(`timm/tf_mobilenetv3_*_100.in1k`), as fastseg does from geffnet.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segkd.errors import ConfigError
from segkd.models import layouts
from segkd.models.base import SegmentationModel
from segkd.models.builder import build_model_with_cfg
from segkd.models.inference import IMAGENET_MEAN, IMAGENET_STD
from segkd.models.layers import Conv2dSame, ConvBNReLU, ConvClassifier, resize
from segkd.models.registry import register_model
from segkd.models.timm_backbone import TimmBackbone

POOL_KERNEL, POOL_STRIDE = 49, (16, 20)  # fastseg's LR-ASPP attention pool
OUTPUT_STRIDE = 8
#: timm trunk -> (feature indices of s2, s4, final; stage -> dilation), fastseg's MobileNetV3_{Large,Small}
TRUNKS = {
    "tf_mobilenetv3_large_100": ((0, 1, 4), {3: 2, 4: 2, 5: 4, 6: 4}),
    "tf_mobilenetv3_small_100": ((0, 1, 4), {2: 2, 3: 2, 4: 4, 5: 4}),
}


class LiteRASPP(nn.Module):
    """LR-ASPP: `branch` (1×1 ConvBNReLU) gated by `attention` (pool → 1×1 conv → sigmoid → bilinear, corners
    aligned, back to the map size); see the module docstring for the pool window."""

    out_mult = 1

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.branch = ConvBNReLU(in_chs, out_chs, 1)
        self.attention = nn.Conv2d(in_chs, out_chs, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h, w = (int(s) for s in x.shape[-2:])  # the window is a constant of an exported graph
        pooled = F.avg_pool2d(x, (min(POOL_KERNEL, h), min(POOL_KERNEL, w)), POOL_STRIDE)  # B×C×h'×w'
        gate = torch.sigmoid(self.attention(pooled))
        return self.branch(x) * resize(gate, (h, w), align_corners=True)  # B×F×H/8×W/8


class AtrousBranch(nn.Sequential):
    """1×1 reduce (no bias) → 3×3 conv at `rate` (bias) → BN → ReLU: one of fastseg's ASPP branches."""

    def __init__(self, in_chs: int, out_chs: int, rate: int):
        super().__init__(OrderedDict(
            reduce=nn.Conv2d(in_chs, out_chs, 1, bias=False),
            conv=nn.Conv2d(out_chs, out_chs, 3, padding=rate, dilation=rate),
            bn=nn.BatchNorm2d(out_chs),
            act=nn.ReLU(inplace=True),
        ))


class ASPP(nn.Module):
    """fastseg's `use_aspp=True`: 1×1 ConvBNReLU, atrous branches at 12 and 36, image pooling (nearest back)."""

    out_mult = 4

    def __init__(self, in_chs: int, out_chs: int, rates: Sequence[int] = (12, 36)):
        super().__init__()
        atrous = [AtrousBranch(in_chs, out_chs, r) for r in rates]
        self.branches = nn.ModuleList([ConvBNReLU(in_chs, out_chs, 1), *atrous])
        self.image_pool = ConvBNReLU(in_chs, out_chs, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.image_pool(F.adaptive_avg_pool2d(x, 1))  # B×F×1×1
        feats = [b(x) for b in self.branches] + [F.interpolate(pooled, size=x.shape[-2:], mode="nearest")]
        return torch.cat(feats, 1)  # B×4F×H/8×W/8


class LRASPPDecoder(nn.Module):
    """The decoder slot: (LR-)ASPP on stage 3, then two upsampling steps with 1×1 skips of stage 2 (64 ch) and
    stage 1 (32 ch); taps `aspp`, `up4`, `fusion`."""

    def __init__(self, encoder_channels: Sequence[int], num_filters: int, use_aspp: bool):
        super().__init__()
        s2_chs, s4_chs, high_chs = encoder_channels
        self.aspp = (ASPP if use_aspp else LiteRASPP)(high_chs, num_filters)
        self.convs2 = nn.Conv2d(s2_chs, 32, 1, bias=False)
        self.convs4 = nn.Conv2d(s4_chs, 64, 1, bias=False)
        self.conv_up1 = nn.Conv2d(num_filters * self.aspp.out_mult, num_filters, 1)
        self.conv_up2 = ConvBNReLU(num_filters + 64, num_filters, 1)
        self.conv_up3 = ConvBNReLU(num_filters + 32, num_filters, 1)

    def forward(self, feats: Sequence[Tensor]) -> "OrderedDict[str, Tensor]":
        s2, s4, final = feats
        aspp = self.aspp(final)  # B×F×H/8×W/8
        y = resize(self.conv_up1(aspp), s4.shape[-2:])  # B×F×H/4×W/4
        up4 = self.conv_up2(torch.cat([y, self.convs4(s4)], 1))  # B×F×H/4×W/4
        y = resize(up4, s2.shape[-2:])  # B×F×H/2×W/2
        fusion = self.conv_up3(torch.cat([y, self.convs2(s2)], 1))  # B×F×H/2×W/2
        return OrderedDict(aspp=aspp, up4=up4, fusion=fusion)


def dilate_stages_(blocks: nn.Sequential, dilations: dict[int, int]) -> None:
    """fastseg's output-stride-8 trunk: stage i's first block loses its stride, and every depthwise conv of stage i
    (the 1×1 conv of a ConvBNAct) gets `dilations[i]`, padded to keep the size."""
    for stage, rate in dilations.items():
        for block in blocks[stage]:
            conv = block.conv_dw if hasattr(block, "conv_dw") else block.conv
            conv.stride, conv.dilation = (1, 1), (rate, rate)
            if isinstance(conv, Conv2dSame):  # stride 1 now: TF "same" padding is static and symmetric
                conv.__class__ = nn.Conv2d
            conv.padding = (rate * (conv.kernel_size[0] - 1) // 2,) * 2


def atrous_trunk(model_name: str, out_indices: Sequence[int], dilations: dict[int, int]) -> TimmBackbone:
    """timm's `features_only` MobileNetV3 made output-stride 8 (`dilate_stages_`), its `feature_info` to match."""
    trunk = TimmBackbone(model_name, out_indices, original_key=partial(layouts.apply_rules, GEFFNET_TO_FASTSEG))
    dilate_stages_(trunk.body.blocks, dilations)
    trunk.feature_info = [d | dict(reduction=min(d["reduction"], OUTPUT_STRIDE)) for d in trunk.feature_info]
    trunk.reductions = [d["reduction"] for d in trunk.feature_info]
    return trunk


# fastseg's module paths: its trunk renames geffnet's stem (`early.0/1`) and stages (`block0..6`)
GEFFNET_TO_FASTSEG: list[layouts.Rule] = [
    (r"^conv_stem\.", "early.0."), (r"^bn1\.", "early.1."), (r"^blocks\.(\d)\.", r"block\1."),
]
REFERENCE_TRUNK = "trunk."
_CONV_BN = {"conv": "0", "bn": "1"}
_ATROUS = {"reduce": "0", "conv": "1", "bn": "2"}
_HEAD_RULES: list[layouts.ModuleRule] = [
    (r"decoder\.aspp\.branch\.(conv|bn)", lambda m: f"aspp_conv1.{_CONV_BN[m[1]]}"),
    (r"decoder\.aspp\.attention", lambda m: "aspp_conv2.1"),
    (r"decoder\.aspp\.branches\.0\.(conv|bn)", lambda m: f"aspp_conv1.{_CONV_BN[m[1]]}"),
    (r"decoder\.aspp\.branches\.([12])\.(\w+)", lambda m: f"aspp_conv{int(m[1]) + 1}.{_ATROUS[m[2]]}"),
    (r"decoder\.aspp\.image_pool\.(conv|bn)", lambda m: f"aspp_pool.{int(_CONV_BN[m[1]]) + 1}"),
    (r"decoder\.(convs2|convs4|conv_up1)", lambda m: m[1]),
    (r"decoder\.(conv_up[23])\.(conv|bn)", lambda m: f"{m[1]}.{m[2]}"),
    (r"head", lambda m: "last"),
]


class MobileNetV3LRASPP(SegmentationModel):
    """fastseg's MobileV3Large / MobileV3Small; see the module docstring for the layout and taps.

    Args:
        num_classes: output classes K (19 for fastseg's Cityscapes weights).
        trunk: `tf_mobilenetv3_large_100` or `tf_mobilenetv3_small_100` (fixed by each entrypoint).
        num_filters: head width F (fastseg's released weights: 64, 128, 256).
        use_aspp: DeepLabV3-style ASPP instead of LR-ASPP (no released weights).
    """


    def __init__(self, num_classes: int = 19, trunk: str = "tf_mobilenetv3_large_100", num_filters: int = 128,
                 use_aspp: bool = False):
        super().__init__()
        if trunk not in TRUNKS:
            raise ConfigError(f"MobileNetV3LRASPP: trunk='{trunk}' is not one of {', '.join(TRUNKS)}")
        if num_filters < 1:
            raise ConfigError(f"MobileNetV3LRASPP: num_filters={num_filters} must be a positive width")
        self.backbone = atrous_trunk(trunk, *TRUNKS[trunk])
        self.decoder = LRASPPDecoder(self.encoder_channels, num_filters, use_aspp)
        self.head = ConvClassifier(num_filters, num_classes)  # fastseg's `last`
        if not use_aspp:  # the ASPP's image pool is adaptive; LR-ASPP's window is not
            self.static_graph_reason = "the LR-ASPP attention pool window depends on the input size"


def reference_keys(model: MobileNetV3LRASPP) -> dict[str, str]:
    """segkd key -> key in fastseg's state dict (without the `module.` DataParallel prefix of its files)."""
    return layouts.reference_keys(model, _HEAD_RULES, "fastseg", REFERENCE_TRUNK)


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: MobileNetV3LRASPP) -> dict[str, Tensor]:
    """Map a fastseg state dict (`trunk.early.0...`, `aspp_conv1.0...`, `last.*`; `load_weights` has already
    dropped the `module.` prefix and the `{"num_classes", "state_dict"}` wrapper) onto segkd's keys, strictly;
    any other layout passes through unchanged."""
    return layouts.from_reference_checkpoint(state_dict, model, _HEAD_RULES, "fastseg", REFERENCE_TRUNK)


def _cfg(trunk: str, **kwargs) -> dict:
    """Family defaults: fastseg's Cityscapes release files (fetched by hand, loaded with model.weights=FILE)."""
    defaults = dict(
        input_size=(3, 1024, 2048), mean=IMAGENET_MEAN, std=IMAGENET_STD, num_classes=19,
        source="github.com/ekzhang/fastseg/releases/download/v0.1-weights/",
        backbone_hub_id=f"timm/{trunk}.in1k",
    )
    return {**defaults, **kwargs}


default_cfgs: dict[str, dict] = {
    "mobilev3_large_lraspp.cityscapes_f256": _cfg("tf_mobilenetv3_large_100", num_filters=256, val_miou=72.3),
    "mobilev3_large_lraspp.cityscapes_f128": _cfg("tf_mobilenetv3_large_100", num_filters=128, val_miou=72.3),
    "mobilev3_small_lraspp.cityscapes_f256": _cfg("tf_mobilenetv3_small_100", num_filters=256, val_miou=67.8),
    "mobilev3_small_lraspp.cityscapes_f128": _cfg("tf_mobilenetv3_small_100", num_filters=128, val_miou=67.4),
    "mobilev3_small_lraspp.cityscapes_f64": _cfg("tf_mobilenetv3_small_100", num_filters=64, val_miou=66.9),
}


def _create(variant: str, pretrained: bool, fixed: dict, **kwargs) -> MobileNetV3LRASPP:
    return build_model_with_cfg(
        MobileNetV3LRASPP, variant, pretrained, default_cfg=default_cfgs[f"{variant}.cityscapes_f128"],
        checkpoint_filter_fn=checkpoint_filter_fn, fixed=fixed, **kwargs,
    )


@register_model
def mobilev3_large_lraspp(pretrained: bool = False, **kwargs) -> MobileNetV3LRASPP:
    """fastseg MobileV3Large: 3,284,547 params at F=128 (3,693,379 at F=256), 19 classes."""
    return _create("mobilev3_large_lraspp", pretrained, dict(trunk="tf_mobilenetv3_large_100"), **kwargs)


@register_model
def mobilev3_small_lraspp(pretrained: bool = False, **kwargs) -> MobileNetV3LRASPP:
    """fastseg MobileV3Small: 1,140,787 params at F=128 (1,451,315 at F=256, 1,022,387 at F=64), 19 classes."""
    return _create("mobilev3_small_lraspp", pretrained, dict(trunk="tf_mobilenetv3_small_100"), **kwargs)
