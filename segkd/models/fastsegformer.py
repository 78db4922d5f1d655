"""FastSegFormer-E/P: real-time segmentation students (Cai et al., Computers and Electronics in Agriculture
217 (2024) 108604; code caixiongjiang/FastSegFormer @8f673e0).

    image ─ backbone (PoolFormer-S12 | EfficientFormerV2-S0, + output norms) ─ stage1..stage4
    stage4 ─ GlobalFeatureExtractor (1×1 reduce, linear bottlenecks, MSP|PPM pyramid) ─ neck      (H/32)
    stage2, neck ─ FeatureFusionModule ─ fusion                                                  (H/8)
    fusion ─ SegHead ─ [IRB: + image at H/2 ─ detail ─ ×2] ─ logits                             (H/8 | H)

Taps: `stage1`..`stage4` (after the output norms), `neck`, `fusion`, `detail` (only with the IRB, H/2),
`logits` (H with the IRB, H/8 without). Every bilinear resize uses align_corners=True.

Differences from the reference, all shape-only: the IRB works at input/2 and outputs the input size (the
reference hard-codes 112/224), and the FFM upsamples to the stride-8 map's size (the reference: ×4). At 224 the
two are identical. -E only runs at 224 (its attention biases are sized for it).

`checkpoint_filter_fn` loads the reference's released state dicts (`common_backbone.network.0.0...`, `FFM.*`,
`classify.*`, `cnn1/cnn2/cnn_up`); `backbone_weights=FILE` loads a local ImageNet backbone (timm or original
layout) after the reference's `weights_init`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from segkd.errors import ConfigError
from segkd.models.base import SegmentationModel
from segkd.models.fastsegformer_decoder import (
    PYRAMIDS,
    FeatureFusionModule,
    GlobalFeatureExtractor,
    ImageReconstructionBranch,
    SegHead,
)
from segkd.models.layers import init_conv_bn_normal_
from segkd.models import layouts
from segkd.models.registry import refuse_download, register_model
from segkd.models.timm_backbone import TimmBackbone, load_backbone_weights

DETAIL_WIDTH = 32  # IRB width; the head outputs this many channels instead of classes when the IRB is on


@dataclass(frozen=True)
class VariantConfig:
    """What differs between -P and -E besides the backbone: output norms, neck widths, input size limit."""

    out_norm: Callable[[int], nn.Module]  # the reference's output norms norm0/2/4/6
    stages: tuple[tuple[int, int], ...]  # (width, blocks) of each linear-bottleneck group
    width: int  # pyramid / FFM / head width
    fixed_input_size: tuple[int, int] | None = None


VARIANTS = {
    "poolformer_s12": VariantConfig(lambda c: nn.GroupNorm(1, c), ((256, 2),), 512),
    "efficientformerv2_s0": VariantConfig(nn.BatchNorm2d, ((128, 3), (160, 3)), 320, fixed_input_size=(224, 224)),
}


class FastSegFormer(SegmentationModel):
    """FastSegFormer; see the module docstring for the layout and taps.

    Args:
        num_classes: output classes K.
        backbone: `poolformer_s12` (-P) or `efficientformerv2_s0` (-E).
        pyramid: `msp` (multi-scale conv pyramid, the paper's) or `ppm` (pyramid pooling, ablation).
        detail_branch: add the image reconstruction branch (IRB), as the released models do.
        backbone_weights: a local ImageNet file for the backbone, loaded after the reference init.
    """

    upsample_align_corners = True

    def __init__(
        self,
        num_classes: int = 4,
        backbone: str = "poolformer_s12",
        pyramid: str = "msp",
        detail_branch: bool = True,
        backbone_weights: str | None = None,
    ):
        super().__init__()
        if backbone not in VARIANTS:
            raise ConfigError(f"FastSegFormer: backbone='{backbone}' is not one of {', '.join(VARIANTS)}")
        if pyramid not in PYRAMIDS:
            raise ConfigError(f"FastSegFormer: pyramid='{pyramid}' is not one of {', '.join(PYRAMIDS)}")
        cfg = VARIANTS[backbone]
        self.fixed_input_size = cfg.fixed_input_size
        self.backbone = TimmBackbone(backbone, out_norm=cfg.out_norm, out_norms={i: f"norm{2 * i}" for i in range(4)})
        _, high_chs, _, low_chs = self.backbone.channels
        self.neck = GlobalFeatureExtractor(low_chs, cfg.stages, cfg.width, expansion=3, pyramid=pyramid)
        self.fusion = FeatureFusionModule(high_chs, cfg.width, cfg.width)
        self.head = SegHead(cfg.width, DETAIL_WIDTH if detail_branch else num_classes)
        self.detail = ImageReconstructionBranch(num_classes, DETAIL_WIDTH) if detail_branch else None
        init_conv_bn_normal_(self)
        if backbone_weights:
            load_backbone_weights(self.backbone, backbone_weights)

    def _taps(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        feats = self.backbone(x)  # B×C_i×H/s×W/s, s = 4, 8, 16, 32
        taps = OrderedDict((f"stage{i + 1}", f) for i, f in enumerate(feats))
        taps["neck"] = self.neck(feats[3])  # B×N×H/32×W/32
        taps["fusion"] = self.fusion(feats[1], taps["neck"])  # B×N×H/8×W/8
        out = self.head(taps["fusion"])  # B×(32 | K)×H/8×W/8
        if self.detail is not None:
            taps["detail"], out = self.detail(x, out)  # B×32×H/2×W/2, B×K×H×W
        taps["logits"] = out
        return taps


# reference module paths: segkd module -> the reference's, for everything outside the backbone
_CONV_BN = {"conv": "0", "bn": "1"}  # nn.Sequential(conv, bn[, relu])
_DSCONV = {"dw.conv": "0", "dw.bn": "1", "pw.conv": "3", "pw.bn": "4"}  # Sequential(dw, bn, relu, pw, bn, relu)
_BOTTLENECK = {
    "expand.conv": "0.conv.0", "expand.bn": "0.conv.1", "dw.conv": "1.conv.0", "dw.bn": "1.conv.1",
    "project.conv": "2", "project.bn": "3",
}
_DECODER_RULES: list[layouts.ModuleRule] = [
    (r"detail\.stem\.(conv|bn)", lambda m: f"cnn1.{_CONV_BN[m[1]]}"),
    (r"detail\.refine\.(\w+\.\w+)", lambda m: f"cnn2.conv.{_DSCONV[m[1]]}"),
    (r"detail\.cls", lambda m: "cnn_up.1"),
    (r"neck\.reduce\.(conv|bn)", lambda m: f"convert_channel.conv.{_CONV_BN[m[1]]}"),
    (r"neck\.stages\.(\d+)\.(\d+)\.(\w+\.\w+)",
     lambda m: f"global_feature.bottleneck{int(m[1]) + 1}.{m[2]}.block.{_BOTTLENECK[m[3]]}"),
    (r"neck\.pyramid\.branches\.(\d)\.([01])\.(conv|bn)",  # MSP: k×k conv{1..4}, then 1×1 conv{5..8}
     lambda m: f"global_feature.ppm.conv{int(m[1]) + 1 + 4 * int(m[2])}.conv.{_CONV_BN[m[3]]}"),
    (r"neck\.pyramid\.branches\.(\d)\.(conv|bn)",  # PPM: conv{1..4} after pooling
     lambda m: f"global_feature.ppm.conv{int(m[1]) + 1}.conv.{_CONV_BN[m[2]]}"),
    (r"neck\.pyramid\.out\.(conv|bn)", lambda m: f"global_feature.ppm.out.conv.{_CONV_BN[m[1]]}"),
    (r"fusion\.low_dw\.(conv|bn)", lambda m: f"FFM.dwconv.conv.{_CONV_BN[m[1]]}"),
    (r"fusion\.low_proj\.(conv|bn)", lambda m: f"FFM.conv_lower_res.{_CONV_BN[m[1]]}"),
    (r"fusion\.high_proj\.(conv|bn)", lambda m: f"FFM.conv_higher_res.{_CONV_BN[m[1]]}"),
    (r"head\.(dsconv\d)\.(\w+\.\w+)", lambda m: f"classify.{m[1]}.conv.{_DSCONV[m[2]]}"),
    (r"head\.cls", lambda m: "classify.conv.1"),  # classify.conv.0 is the Dropout
]


def reference_keys(model: FastSegFormer) -> dict[str, str]:
    """segkd key -> key in the reference repository's state dict, including the index buffers it saves."""
    return layouts.reference_keys(model, _DECODER_RULES, "FastSegFormer")


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: FastSegFormer) -> dict[str, Tensor]:
    """Map a reference FastSegFormer state dict onto segkd's keys; any other layout passes through unchanged."""
    return layouts.from_reference_checkpoint(state_dict, model, _DECODER_RULES, "FastSegFormer")


def _cfg(**kwargs) -> dict:
    """Family defaults of a released weight file (fetched by hand: segkd never downloads)."""
    defaults = dict(
        input_size=(3, 224, 224), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), num_classes=4,
        source="github.com/caixiongjiang/FastSegFormer (README 'ckpt' links), Orange_Navel",
    )
    return {**defaults, **kwargs}


default_cfgs: dict[str, dict] = {
    "fastsegformer_p.orange_navel": _cfg(test_miou=89.33),
    "fastsegformer_e.orange_navel": _cfg(test_miou=88.78, fixed_input_size=True),
}


def _create_fastsegformer(name: str, pretrained: bool, **kwargs) -> FastSegFormer:
    cfg = default_cfgs[f"{name}.orange_navel"]
    if pretrained:
        refuse_download(name, f"them from {cfg['source']}")
    model = FastSegFormer(**kwargs)
    model.default_cfg = cfg
    return model


@register_model
def fastsegformer_p(pretrained: bool = False, **kwargs) -> FastSegFormer:
    """FastSegFormer-P (PoolFormer-S12): 14,891,940 params and 2.69 fvcore GFLOPs at 224 with MSP + IRB."""
    return _create_fastsegformer("fastsegformer_p", pretrained, backbone="poolformer_s12", **kwargs)


@register_model
def fastsegformer_e(pretrained: bool = False, **kwargs) -> FastSegFormer:
    """FastSegFormer-E (EfficientFormerV2-S0): 5,013,044 params and 0.79 fvcore GFLOPs at 224, 224 only."""
    return _create_fastsegformer("fastsegformer_e", pretrained, backbone="efficientformerv2_s0", **kwargs)
