"""EfficientDet for semantic segmentation, D0-D7 (Tan et al., EfficientDet, CVPR 2020 §6), as the
AlexeyVision/EfficientDet_Segmentation repository (@f492a2f) builds it.

    image ─ EfficientNet-B* (timm tf_efficientnet_b*: TF "same" padding, BN eps 1e-3) ─ stage1..3  (H/4..H/16)
    stage1..3 ─ BiFPN × D (plain-sum fusion, no BN after its separable convs) ─ p2..p6       (H/4..H/64)
    head p2:  p2 ─ 2 × [ConvT k2 s2 + BN + SiLU] ─ fusion (H) ─ N × [sep conv + BN + SiLU] ─ sep conv ─ logits
    head fpn: p6 ─ 4 × [ConvT k2 s2 + BN + SiLU, concat the next finer level] ─ fusion (H/4) ─ ConvT ─ logits
              (H/2; bilinear to H like every head below the input size)

Taps: `stage1`..`stage3` (the backbone's stride-4/8/16 maps), `p2`..`p6` (the last BiFPN layer's outputs, named
by stride: P_l at 1/2^l; the repository calls them P3..P7), `fusion` (the head's input), `logits`.

Defaults reproduce the repository: `head="p2"` (the shipped head; `"fpn"` is its commented-out top-down head,
whose `head_layers` is fixed by the number of levels), `weighted_fusion=False` (the repository sums BiFPN inputs;
`True` is the paper's fast normalised fusion). Every BatchNorm has eps 1e-3 and momentum 0.01 (the repository's).
Input sides must be multiples of 64 (P6 is pooled twice from the stride-16 map and upsampled back ×2).
The backbone runs all its blocks, as the repository's does; its classification conv head is not built.

Slots: `backbone` (timm features_only, stride-4/8/16 stages), `decoder` (BiFPN + fusion), `head`.

`checkpoint_filter_fn` loads the repository's state dicts (`backbone.blocks.*`, `feature_network.*`,
`expand_conv.*`, `classifier.*`, optionally `module.`-prefixed); the backbone's unused classification head
(`backbone.conv_head`, `backbone.bn1`, `backbone.classifier`) is dropped with a warning. `backbone_weights=FILE`
reads the repository's `efficientnet_b*.pth` files (its own EfficientNet layout), lukemelas/EfficientNet-PyTorch
files (`_blocks.*`) or timm files; `pretrained=True` takes timm's `tf_efficientnet_b*` ImageNet weights.
"""

from __future__ import annotations

import re
import warnings
from functools import partial

from torch import Tensor, nn

from segkd.errors import ConfigError, WeightsError
from segkd.models import layouts
from segkd.models.base import SegmentationModel
from segkd.models.builder import build_model_with_cfg
from segkd.models.checkpoint import read_weights_file, unwrap_state_dict
from segkd.models.efficientdet_seg_decoder import BiFPNDecoder, P2Fusion, SeparableHead, TopDownFusion
from segkd.models.registry import register_model
from segkd.models.timm_backbone import TimmBackbone, load_backbone_weights

BACKBONES = {f"efficientnet_b{i}": f"tf_efficientnet_b{i}" for i in range(8)}  # the same-padded TF ports
HEADS = ("p2", "fpn")
STAGES = (1, 2, 3)  # timm feature indices of the stride-4, -8 and -16 maps (the repository's levels 2, 3, 4)
DROP_PATH_RATE = 0.2  # the repository's drop-connect rate for every B*, scaled per block as in timm
BN_EPS, BN_MOMENTUM = 1e-3, 0.01


class EfficientDetSeg(SegmentationModel):
    """EfficientDet-seg; see the module docstring for the layout and taps.

    Args:
        num_classes: output classes K.
        backbone: `efficientnet_b0` .. `efficientnet_b7`.
        bifpn_channels: BiFPN width W.
        bifpn_layers: number of BiFPN layers D.
        head: `p2` (the shipped head) or `fpn` (the top-down head).
        head_channels: head width (its separable convs, or the top-down transposed convs).
        head_layers: separable conv-BN-SiLU layers before the classifier (`p2` head only).
        weighted_fusion: the paper's fast normalised fusion instead of the repository's plain sum.
    """

    def __init__(
        self,
        num_classes: int = 21,
        backbone: str = "efficientnet_b4",
        bifpn_channels: int = 128,
        bifpn_layers: int = 3,
        head: str = "p2",
        head_channels: int = 256,
        head_layers: int = 3,
        weighted_fusion: bool = False,
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise ConfigError(f"EfficientDetSeg: backbone='{backbone}' is not one of {', '.join(BACKBONES)}")
        if head not in HEADS:
            raise ConfigError(f"EfficientDetSeg: head='{head}' is not one of {', '.join(HEADS)}")
        self.backbone = TimmBackbone(BACKBONES[backbone], out_indices=STAGES, drop_path_rate=DROP_PATH_RATE)
        self.backbone.original_key = partial(repository_backbone_key, block_layout(self.backbone.body))
        width = bifpn_channels
        if head == "p2":
            fusion = P2Fusion(width)
            self.head = SeparableHead(width, head_channels, head_layers, num_classes)
        else:
            fusion = TopDownFusion(width, head_channels)
            self.head = nn.ConvTranspose2d(width + head_channels, num_classes, 2, stride=2)  # B×K×H/2×W/2
        self.decoder = BiFPNDecoder(self.encoder_channels, width, bifpn_layers, fusion, weighted_fusion)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = BN_EPS, BN_MOMENTUM

    @property
    def size_divisor(self) -> int:
        """64: the BiFPN pools the stride-16 map twice more, and its ×2 upsampling must meet each level exactly."""
        return 4 * max(self.encoder_reductions)


# -- the repository's key layout ---------------------------------------------------------------------------
def block_layout(body: nn.Module) -> dict[tuple[int, int], tuple[int, bool]]:
    """timm (stage, block) -> (the repository's flat block index, whether the block expands first)."""
    layout, flat = {}, 0
    for s, stage in enumerate(body.blocks):
        for b, block in enumerate(stage):
            layout[s, b] = (flat, hasattr(block, "conv_pwl"))
            flat += 1
    return layout


_EXPANDING = {"conv_pw": "pw_expand_conv", "bn1": "bn0", "conv_dw": "dw_conv", "bn2": "bn1",
              "conv_pwl": "pw_projection_conv", "bn3": "bn2"}  # timm InvertedResidual -> MBConvBlock
_DEPTHWISE = {"conv_dw": "dw_conv", "bn1": "bn1", "conv_pw": "pw_projection_conv", "bn2": "bn2"}  # timm DS block
_SE = {"se.conv_reduce": "se_reduce", "se.conv_expand": "se_expand"}


def repository_backbone_key(layout: dict[tuple[int, int], tuple[int, bool]], key: str) -> str:
    """A timm tf_efficientnet features key -> the repository's EfficientNet key (`blocks.5.dw_conv.weight`)."""
    m = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(se\.conv_\w+|\w+)\.(\w+)", key)
    if m is None:
        return {"bn1": "bn0"}.get(key.partition(".")[0], key.partition(".")[0]) + "." + key.partition(".")[2]
    flat, expands = layout[int(m[1]), int(m[2])]
    module = _SE.get(m[3]) or (_EXPANDING if expands else _DEPTHWISE)[m[3]]
    return f"blocks.{flat}.{module}.{m[4]}"


# lukemelas/EfficientNet-PyTorch names -> the repository's (it converted lukemelas' weights to its own names)
_LUKEMELAS: list[layouts.Rule] = [
    (r"(^|\.)_expand_conv\.", r"\1pw_expand_conv."),
    (r"(^|\.)_depthwise_conv\.", r"\1dw_conv."),
    (r"(^|\.)_project_conv\.", r"\1pw_projection_conv."),
    (r"^_fc\.", "classifier."),
    (r"(^|\.)_(?=[a-z])", r"\1"),  # _conv_stem, _bn0, _blocks, _se_reduce, ...
]

REPOSITORY_NECK = "feature_network."  # a key only the repository's whole-model state dicts have
UNUSED = ("backbone.conv_head.", "backbone.bn1.", "backbone.classifier.")  # its classification head
_UP = {"up1.conv": "0", "up1.bn": "1", "up2.conv": "3", "up2.bn": "4"}  # expand_conv = Sequential(ct, bn, act) × 2


def _input_conv(m: re.Match) -> str:
    """`p3_in2.conv` -> `p4_input_conv_2`: segkd's P_l is the repository's P_{l+1}; P2 and P5 have one conv."""
    level = int(m[2]) + 1
    suffix = "" if level in (3, 6) else f"_{2 if m[3] else 1}"
    return f"feature_network.{m[1]}.p{level}_{'input_conv' if m[4] == 'conv' else 'bn'}{suffix}"


_NECK_RULES: list[layouts.ModuleRule] = [
    (r"decoder\.layers\.(\d+)\.p(\d)_td\.conv\.(dw|pw)",
     lambda m: f"feature_network.{m[1]}.p{int(m[2]) + 1}_hidden_conv.{m[3]}_conv"),
    (r"decoder\.layers\.(\d+)\.p(\d)_out\.conv\.(dw|pw)",
     lambda m: f"feature_network.{m[1]}.p{int(m[2]) + 1}_output_conv.{m[3]}_conv"),
    (r"decoder\.layers\.(\d+)\.p(\d)_in(2?)\.(conv|bn)", _input_conv),
    (r"decoder\.fusion\.(up\d\.\w+)", lambda m: f"expand_conv.{_UP[m[1]]}"),
    (r"decoder\.fusion\.ups\.(\d+)\.conv", lambda m: f"classifier.head_fpn.{m[1]}"),
    (r"decoder\.fusion\.ups\.(\d+)\.bn", lambda m: f"classifier.head_bn.{m[1]}"),
    (r"head\.layers\.(\d+)\.conv\.(dw|pw)", lambda m: f"classifier.head_conv.{m[1]}.{m[2]}_conv"),
    (r"head\.layers\.(\d+)\.bn", lambda m: f"classifier.head_bn.{m[1]}"),
    (r"head\.cls\.(dw|pw)", lambda m: f"classifier.classifier.{m[1]}_conv"),
    (r"head", lambda m: "classifier.classifier"),  # the top-down head's transposed-conv classifier
]


def reference_keys(model: EfficientDetSeg) -> dict[str, str]:
    """segkd key -> key in the repository's `EfficientDetSegmentation.state_dict()`."""
    if any(n.endswith(".weights") for n, _ in model.decoder.named_parameters()):
        raise WeightsError("the repository's checkpoints have no fusion weights: build with weighted_fusion=false")
    return layouts.reference_keys(model, _NECK_RULES, "EfficientDetSeg", "backbone.")


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: EfficientDetSeg) -> dict[str, Tensor]:
    """Map a repository state dict onto segkd's keys (its unused classification head dropped with a warning);
    any other layout passes through unchanged."""
    if not any(k.startswith(REPOSITORY_NECK) for k in state_dict):
        return state_dict
    unused = [k for k in state_dict if k.startswith(UNUSED)]
    if unused:
        warnings.warn(f"EfficientDet-seg checkpoint: dropped {len(unused)} keys of the backbone's unused "
                      f"classification head ({', '.join(p.rstrip('.') for p in UNUSED)})", stacklevel=3)
    state = {k: v for k, v in state_dict.items() if not k.startswith(UNUSED)}
    return layouts.remap_state_dict(state, reference_keys(model), model, "EfficientDet-seg repository checkpoint")


def load_backbone(model: EfficientDetSeg, path: str | None) -> str:
    """timm's hub weights (`path=None`), or a local file in the repository's, lukemelas' or timm's layout."""
    if path is None:
        return model.backbone.load_pretrained(None)
    state = unwrap_state_dict(read_weights_file(path), path)
    load_backbone_weights(model.backbone, path, {layouts.apply_rules(_LUKEMELAS, k): v for k, v in state.items()})
    return str(path)


# -- default cfgs and entrypoints --------------------------------------------------------------------------
def _cfg(size: int, **kwargs) -> dict:
    defaults = dict(
        input_size=(3, size, size), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), num_classes=21,
        source="github.com/AlexeyVision/EfficientDet_Segmentation (D4 only; its release 'backbone_weights_v1.0')",
    )
    return {**defaults, **kwargs}


default_cfgs: dict[str, dict] = {
    "efficientdet_d4_seg.voc": _cfg(512, val_miou=81.20),  # the repository's; the others: EfficientDet Table 1
    **{f"efficientdet_d{d}_seg.voc": _cfg(size)
       for d, size in ((0, 512), (1, 640), (2, 768), (3, 896), (5, 1280), (6, 1280), (7, 1536))},
}


def _arch(backbone: str, width: int, depth: int, head_layers: int) -> dict:
    """A variant's numbers: backbone, BiFPN width × depth, head depth (its width is twice the BiFPN's)."""
    return dict(backbone=backbone, bifpn_channels=width, bifpn_layers=depth, head_channels=2 * width,
                head_layers=head_layers)


def _create(variant: str, pretrained: bool, arch: dict, **kwargs) -> EfficientDetSeg:
    """Build `variant`; options given by the caller (a preset's `model.options`) override its numbers."""
    return build_model_with_cfg(
        EfficientDetSeg, variant, pretrained, default_cfg=default_cfgs[f"{variant}.voc"],
        checkpoint_filter_fn=checkpoint_filter_fn, load_backbone=load_backbone, **(arch | kwargs),
    )


@register_model
def efficientdet_d0_seg(pretrained: bool = False, **kwargs) -> EfficientDetSeg:
    """EfficientNet-B0, BiFPN 64 × 3, head 128 × 3 (compound-scaled; not in the repository)."""
    return _create("efficientdet_d0_seg", pretrained, _arch("efficientnet_b0", 64, 3, 3), **kwargs)


@register_model
def efficientdet_d1_seg(pretrained: bool = False, **kwargs) -> EfficientDetSeg:
    """EfficientNet-B1, BiFPN 88 × 4, head 176 × 3 (compound-scaled; not in the repository)."""
    return _create("efficientdet_d1_seg", pretrained, _arch("efficientnet_b1", 88, 4, 3), **kwargs)


@register_model
def efficientdet_d2_seg(pretrained: bool = False, **kwargs) -> EfficientDetSeg:
    """EfficientNet-B2, BiFPN 112 × 5, head 224 × 3 (compound-scaled; not in the repository)."""
    return _create("efficientdet_d2_seg", pretrained, _arch("efficientnet_b2", 112, 5, 3), **kwargs)


@register_model
def efficientdet_d3_seg(pretrained: bool = False, **kwargs) -> EfficientDetSeg:
    """EfficientNet-B3, BiFPN 160 × 6, head 320 × 4 (compound-scaled; not in the repository)."""
    return _create("efficientdet_d3_seg", pretrained, _arch("efficientnet_b3", 160, 6, 4), **kwargs)


@register_model
def efficientdet_d4_seg(pretrained: bool = False, **kwargs) -> EfficientDetSeg:
    """The repository's model: EfficientNet-B4, BiFPN 128 × 3, head 256 × 3; 17,723,613 params with 21 classes."""
    return _create("efficientdet_d4_seg", pretrained, _arch("efficientnet_b4", 128, 3, 3), **kwargs)


@register_model
def efficientdet_d5_seg(pretrained: bool = False, **kwargs) -> EfficientDetSeg:
    """EfficientNet-B5, BiFPN 288 × 7, head 576 × 4 (compound-scaled; not in the repository)."""
    return _create("efficientdet_d5_seg", pretrained, _arch("efficientnet_b5", 288, 7, 4), **kwargs)


@register_model
def efficientdet_d6_seg(pretrained: bool = False, **kwargs) -> EfficientDetSeg:
    """EfficientNet-B6, BiFPN 384 × 8, head 768 × 5 (compound-scaled; not in the repository)."""
    return _create("efficientdet_d6_seg", pretrained, _arch("efficientnet_b6", 384, 8, 5), **kwargs)


@register_model
def efficientdet_d7_seg(pretrained: bool = False, **kwargs) -> EfficientDetSeg:
    """EfficientNet-B6, BiFPN 384 × 8, head 768 × 5, 1536 input (compound-scaled; not in the repository)."""
    return _create("efficientdet_d7_seg", pretrained, _arch("efficientnet_b6", 384, 8, 5), **kwargs)
