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

Slots: `backbone` (timm + output norms), `decoder` (GFE `neck` + FFM `fusion`), `head` (SegHead + IRB).

`checkpoint_filter_fn` loads the reference's released state dicts (`common_backbone.network.0.0...`, `FFM.*`,
`classify.*`, `cnn1/cnn2/cnn_up`); `pretrained=True` (timm hub) or `backbone_weights=FILE` (timm or original
layout) loads an ImageNet backbone after the reference's `weights_init`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

import re
from functools import partial

from segkd.errors import ConfigError
from segkd.models import layouts
from segkd.models.base import SegmentationModel
from segkd.models.builder import build_model_with_cfg
from segkd.models.fastsegformer_decoder import (
    PYRAMIDS,
    FastSegFormerDecoder,
    FeatureFusionModule,
    GlobalFeatureExtractor,
    ImageReconstructionBranch,
    SegHead,
)
from segkd.models.layers import init_conv_bn_normal_
from segkd.models.registry import register_model
from segkd.models.timm_backbone import TimmBackbone

DETAIL_WIDTH = 32  # IRB width; the head outputs this many channels instead of classes when the IRB is on


def _stage(m: re.Match) -> str:
    """`stages_i.blocks.` -> `network.{2i}.`: stages sit at even indices, downsamples at odd ones."""
    return f"network.{2 * int(m[1])}."


# timm features_only key -> the original backbone repository's key (renames only)
_POOLFORMER: list[layouts.Rule] = [  # sail-sg/poolformer: patch_embed.proj, network.{0,2,4,6} stages, {1,3,5} downs
    (r"^stem\.conv\.", "patch_embed.proj."),
    (r"^stages_(\d)\.downsample\.conv\.", lambda m: f"network.{2 * int(m[1]) - 1}.proj."),
    (r"^stages_(\d)\.blocks\.", _stage),
    (r"\.layer_scale(\d)\.scale$", r".layer_scale_\1"),
]
_EFFICIENTFORMERV2: list[layouts.Rule] = [  # snap-research/EfficientFormer: Sequential indices in conv+BN pairs
    (r"^stem_conv(\d)\.conv\.", lambda m: f"patch_embed.{3 * int(m[1]) - 3}."),  # Sequential(conv, bn, act) × 2
    (r"^stem_conv(\d)\.bn\.", lambda m: f"patch_embed.{3 * int(m[1]) - 2}."),
    (r"^stages_([12])\.downsample\.conv\.conv\.", lambda m: f"network.{2 * int(m[1]) - 1}.proj."),
    (r"^stages_([12])\.downsample\.conv\.bn\.", lambda m: f"network.{2 * int(m[1]) - 1}.norm."),
    (r"^stages_3\.downsample\.conv\.conv\.", "network.5.conv."),
    (r"^stages_3\.downsample\.conv\.bn\.", "network.5.bn."),
    (r"^stages_3\.downsample\.attn\.", "network.5.attn."),
    (r"^stages_(\d)\.blocks\.", _stage),
    (r"\.mlp\.(fc1|fc2|mid)\.conv\.", r".mlp.\1."),
    (r"\.mlp\.fc1\.bn\.", ".mlp.norm1."),
    (r"\.mlp\.fc2\.bn\.", ".mlp.norm2."),
    (r"\.mlp\.mid\.bn\.", ".mlp.mid_norm."),
    (r"\.ls(\d)\.gamma$", r".layer_scale_\1"),
    (r"\.q\.local\.", ".q.local.0."),
    (r"\.q\.proj\.conv\.", ".q.proj.0."),
    (r"\.q\.proj\.bn\.", ".q.proj.1."),
    (r"\.proj\.conv\.", ".proj.1."),  # attention output: Sequential(act, conv, bn)
    (r"\.proj\.bn\.", ".proj.2."),
    (r"\.(q|k|v|v_local|stride_conv)\.conv\.", r".\1.0."),
    (r"\.(q|k|v|v_local|stride_conv)\.bn\.", r".\1.1."),
]


@dataclass(frozen=True)
class VariantConfig:
    """What differs between -P and -E besides the backbone: output norms, neck widths, input size limit."""

    out_norm: Callable[[int], nn.Module]  # the reference's output norms norm0/2/4/6
    stages: tuple[tuple[int, int], ...]  # (width, blocks) of each linear-bottleneck group
    width: int  # pyramid / FFM / head width
    original_rules: list[layouts.Rule]  # the backbone's original key layout
    fixed_input_size: tuple[int, int] | None = None


VARIANTS = {
    "poolformer_s12": VariantConfig(lambda c: nn.GroupNorm(1, c), ((256, 2),), 512, _POOLFORMER),
    "efficientformerv2_s0": VariantConfig(
        nn.BatchNorm2d, ((128, 3), (160, 3)), 320, _EFFICIENTFORMERV2, fixed_input_size=(224, 224)
    ),
}


class FastSegFormer(SegmentationModel):
    """FastSegFormer; see the module docstring for the layout and taps.

    Args:
        num_classes: output classes K.
        backbone: `poolformer_s12` (-P) or `efficientformerv2_s0` (-E).
        pyramid: `msp` (multi-scale conv pyramid, the paper's) or `ppm` (pyramid pooling, ablation).
        detail_branch: add the image reconstruction branch (IRB), as the released models do.
    """

    upsample_align_corners = True
    #: module moves since the first release (segkd checkpoints saved before them still load)
    legacy_keys = ((r"^neck\.", "decoder.neck."), (r"^fusion\.", "decoder.fusion."), (r"^detail\.", "head.detail."))

    def __init__(
        self,
        num_classes: int = 4,
        backbone: str = "poolformer_s12",
        pyramid: str = "msp",
        detail_branch: bool = True,
    ):
        super().__init__()
        if backbone not in VARIANTS:
            raise ConfigError(f"FastSegFormer: backbone='{backbone}' is not one of {', '.join(VARIANTS)}")
        if pyramid not in PYRAMIDS:
            raise ConfigError(f"FastSegFormer: pyramid='{pyramid}' is not one of {', '.join(PYRAMIDS)}")
        cfg = VARIANTS[backbone]
        self.fixed_input_size = cfg.fixed_input_size
        self.backbone = TimmBackbone(
            backbone, out_norm=cfg.out_norm, out_norms={i: f"norm{2 * i}" for i in range(4)},
            original_key=partial(layouts.apply_rules, cfg.original_rules),
        )
        _, high_chs, _, low_chs = self.encoder_channels
        self.decoder = FastSegFormerDecoder(
            GlobalFeatureExtractor(low_chs, cfg.stages, cfg.width, expansion=3, pyramid=pyramid),
            FeatureFusionModule(high_chs, cfg.width, cfg.width),
        )
        detail = ImageReconstructionBranch(num_classes, DETAIL_WIDTH) if detail_branch else None
        self.head = SegHead(cfg.width, DETAIL_WIDTH if detail_branch else num_classes, detail=detail)
        init_conv_bn_normal_(self)


REFERENCE_BACKBONE = "common_backbone."  # the reference repository's backbone prefix
# reference module paths: segkd module -> the reference's, for everything outside the backbone
_CONV_BN = {"conv": "0", "bn": "1"}  # nn.Sequential(conv, bn[, relu])
_DSCONV = {"dw.conv": "0", "dw.bn": "1", "pw.conv": "3", "pw.bn": "4"}  # Sequential(dw, bn, relu, pw, bn, relu)
_BOTTLENECK = {
    "expand.conv": "0.conv.0", "expand.bn": "0.conv.1", "dw.conv": "1.conv.0", "dw.bn": "1.conv.1",
    "project.conv": "2", "project.bn": "3",
}
_DECODER_RULES: list[layouts.ModuleRule] = [
    (r"head\.detail\.stem\.(conv|bn)", lambda m: f"cnn1.{_CONV_BN[m[1]]}"),
    (r"head\.detail\.refine\.(\w+\.\w+)", lambda m: f"cnn2.conv.{_DSCONV[m[1]]}"),
    (r"head\.detail\.cls", lambda m: "cnn_up.1"),
    (r"decoder\.neck\.reduce\.(conv|bn)", lambda m: f"convert_channel.conv.{_CONV_BN[m[1]]}"),
    (r"decoder\.neck\.stages\.(\d+)\.(\d+)\.(\w+\.\w+)",
     lambda m: f"global_feature.bottleneck{int(m[1]) + 1}.{m[2]}.block.{_BOTTLENECK[m[3]]}"),
    (r"decoder\.neck\.pyramid\.branches\.(\d)\.([01])\.(conv|bn)",  # MSP: k×k conv{1..4}, then 1×1 conv{5..8}
     lambda m: f"global_feature.ppm.conv{int(m[1]) + 1 + 4 * int(m[2])}.conv.{_CONV_BN[m[3]]}"),
    (r"decoder\.neck\.pyramid\.branches\.(\d)\.(conv|bn)",  # PPM: conv{1..4} after pooling
     lambda m: f"global_feature.ppm.conv{int(m[1]) + 1}.conv.{_CONV_BN[m[2]]}"),
    (r"decoder\.neck\.pyramid\.out\.(conv|bn)", lambda m: f"global_feature.ppm.out.conv.{_CONV_BN[m[1]]}"),
    (r"decoder\.fusion\.low_dw\.(conv|bn)", lambda m: f"FFM.dwconv.conv.{_CONV_BN[m[1]]}"),
    (r"decoder\.fusion\.low_proj\.(conv|bn)", lambda m: f"FFM.conv_lower_res.{_CONV_BN[m[1]]}"),
    (r"decoder\.fusion\.high_proj\.(conv|bn)", lambda m: f"FFM.conv_higher_res.{_CONV_BN[m[1]]}"),
    (r"head\.(dsconv\d)\.(\w+\.\w+)", lambda m: f"classify.{m[1]}.conv.{_DSCONV[m[2]]}"),
    (r"head\.cls", lambda m: "classify.conv.1"),  # classify.conv.0 is the Dropout
]


def reference_keys(model: FastSegFormer) -> dict[str, str]:
    """segkd key -> key in the reference repository's state dict, including the index buffers it saves."""
    return layouts.reference_keys(model, _DECODER_RULES, "FastSegFormer", REFERENCE_BACKBONE)


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: FastSegFormer) -> dict[str, Tensor]:
    """Map a reference FastSegFormer state dict onto segkd's keys; any other layout passes through unchanged."""
    return layouts.from_reference_checkpoint(state_dict, model, _DECODER_RULES, "FastSegFormer", REFERENCE_BACKBONE)


def _cfg(**kwargs) -> dict:
    """Family defaults of a released weight file (fetched by hand from `source`)."""
    defaults = dict(
        input_size=(3, 224, 224), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), num_classes=4,
        source="github.com/caixiongjiang/FastSegFormer (README 'ckpt' links), Orange_Navel",
    )
    return {**defaults, **kwargs}


default_cfgs: dict[str, dict] = {
    "fastsegformer_p.orange_navel": _cfg(test_miou=89.33),
    "fastsegformer_e.orange_navel": _cfg(test_miou=88.78, fixed_input_size=True),
}


def _create_fastsegformer(variant: str, pretrained: bool, fixed: dict, **kwargs) -> FastSegFormer:
    return build_model_with_cfg(
        FastSegFormer, variant, pretrained, default_cfg=default_cfgs[f"{variant}.orange_navel"],
        checkpoint_filter_fn=checkpoint_filter_fn, fixed=fixed, **kwargs,
    )


@register_model
def fastsegformer_p(pretrained: bool = False, **kwargs) -> FastSegFormer:
    """FastSegFormer-P (PoolFormer-S12): 14,891,940 params and 2.69 fvcore GFLOPs at 224 with MSP + IRB."""
    return _create_fastsegformer("fastsegformer_p", pretrained, dict(backbone="poolformer_s12"), **kwargs)


@register_model
def fastsegformer_e(pretrained: bool = False, **kwargs) -> FastSegFormer:
    """FastSegFormer-E (EfficientFormerV2-S0): 5,013,044 params and 0.79 fvcore GFLOPs at 224, 224 only."""
    return _create_fastsegformer("fastsegformer_e", pretrained, dict(backbone="efficientformerv2_s0"), **kwargs)
