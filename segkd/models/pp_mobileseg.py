"""PP-MobileSeg-Base/-Tiny (Tang et al. 2023, arXiv 2304.05152; PaddleSeg @d7975e7 `models/pp_mobileseg.py`,
`backbones/strideformer.py`; spec: shared/specs/pp_mobileseg.md).

    image ─ StrideFormer (segkd.models.strideformer) ─ stage1..stage4       (1/4, 1/8, 1/16, 1/32)
    stage2..4 ─ AAM (sigmoid gates from each level × detail embeddings + the 1/32 semantic embedding) ─ fusion
          Base: AAMSx8, 256 ch at 1/8;  Tiny: AAM, 256 ch at 1/16
    fusion ─ head (depthwise 1×1 conv-BN-ReLU, Dropout2d 0.1, 1×1 conv) ─ logits         (1/8 | 1/16)

Taps: `stage1`..`stage4`, `fusion`, `logits` (at the head's resolution).

**VIM** (valid-interpolate module): `upsample="vim"` (the default) makes `predict_labels` upsample only the
classes that win somewhere at the head's resolution: argmax there, the sorted set of classes present in the
batch, gather those channels, bilinear-upsample them alone, argmax, map back to class ids. It is active in eval
mode when the model has ≥ 30 classes (as the reference); otherwise, and with `upsample="interpolate"`, labels
are the argmax of the full logits. `forward` always returns full logits at input size (training, KD, logits
export). A pixel whose full-resolution winner is absent at low resolution gets the best present class instead.

Parameters with 150 classes: Base 5,943,878, Tiny 1,492,298 (the spec's count of the reference code; its
README says 5.62M / 1.61M).

Weights: `load_weights(model, "model.pdparams")` reads PaddleSeg's released files (`segkd.models.pdparams`,
numpy arrays only) and maps Paddle's keys with `paddle_key`; the model has no Linear layer to transpose.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from segkd.errors import ConfigError
from segkd.models import layouts, pdparams
from segkd.models.base import SegmentationModel
from segkd.models.builder import build_model_with_cfg
from segkd.models.layers import ConvBN, ConvBNReLU, ConvClassifier, resize
from segkd.models.registry import register_model
from segkd.models.strideformer import StrideFormer, StrideFormerConfig

VIM_MIN_CLASSES = 30  # the reference interpolates everything below this many classes
UPSAMPLE_MODES = ("vim", "interpolate")
AAM_CHANNELS = 256  # AAM output width
VARIANTS: dict[str, tuple[StrideFormerConfig, dict]] = {
    "base": (
        StrideFormerConfig(
            stages=(
                ((3, 16, 16, True, "relu", 1), (3, 64, 32, False, "relu", 2), (3, 96, 32, False, "relu", 1)),
                ((5, 128, 64, True, "hardswish", 2), (5, 240, 64, True, "hardswish", 1)),
                ((5, 384, 128, True, "hardswish", 2), (5, 384, 128, True, "hardswish", 1)),
                ((5, 768, 192, True, "hardswish", 2), (5, 768, 192, True, "hardswish", 1)),
            ),
            stem_chs=16, embed_dims=(128, 192), depths=(3, 3), num_heads=8,
        ),
        dict(out_level=0, gated=(1, 2), embedded=(0,)),  # AAMSx8: output at 1/8
    ),
    "tiny": (
        StrideFormerConfig(
            stages=(
                ((3, 16, 16, True, "relu", 1), (3, 64, 32, False, "relu", 2), (3, 48, 24, False, "relu", 1)),
                ((5, 96, 32, True, "hardswish", 2), (5, 96, 32, True, "hardswish", 1)),
                ((5, 160, 64, True, "hardswish", 2), (5, 160, 64, True, "hardswish", 1)),
                ((3, 384, 128, True, "hardswish", 2), (3, 384, 128, True, "hardswish", 1)),
            ),
            stem_chs=16, embed_dims=(64, 128), depths=(2, 2), num_heads=4,
        ),
        dict(out_level=1, gated=(0, 1, 2), embedded=(0, 1)),  # AAM: output at 1/16
    ),
}


class AAM(nn.Module):
    """Aggregated attention module (the reference after its sigmoid-gate fix, spec §3) on stages 2..4.

    out = Π_{g in gated} σ(gate_g(x_g)) · Σ_{e in embedded} embed_e(x_e) + embed(x_1/32), at level `out_level`.
    Shallower maps are resized to the output size before their 1×1 conv-BN; the 1/32 map's gate and embedding
    are resized after (so its sigmoid comes first), as the reference does.
    """

    def __init__(self, in_chs: Sequence[int], out_chs: int, out_level: int, gated: Sequence[int],
                 embedded: Sequence[int]):
        super().__init__()
        self.out_level, self.gated, self.embedded = out_level, tuple(gated), tuple(embedded)
        deepest = len(in_chs) - 1
        self.embed = nn.ModuleList(ConvBN(in_chs[i], out_chs) for i in (*embedded, deepest))
        self.gate = nn.ModuleList(ConvBN(in_chs[i], out_chs) for i in gated)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        levels = list(feats[-3:])  # 1/8, 1/16, 1/32
        size = levels[self.out_level].shape[-2:]
        levels[:-1] = [f if f.shape[-2:] == size else resize(f, size) for f in levels[:-1]]
        deepest = len(levels) - 1
        out = sum(embed(levels[i]) for embed, i in zip(self.embed, self.embedded))  # B×256×h×w
        for gate, i in zip(self.gate, self.gated):
            g = torch.sigmoid(gate(levels[i]))
            out = out * (resize(g, size) if i == deepest else g)
        return out + resize(self.embed[-1](levels[-1]), size)  # B×256×h×w


class PPMobileSegHead(nn.Sequential):
    """Depthwise 1×1 conv-BN-ReLU (a per-channel scale) → Dropout2d → 1×1 conv to K classes."""

    def __init__(self, in_chs: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.linear_fuse = ConvBNReLU(in_chs, in_chs, groups=in_chs)
        self.conv_seg = ConvClassifier(in_chs, num_classes, dropout=dropout)


def vim_labels(logits: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
    """B×K×h×w logits -> B×H×W int64 labels, upsampling only the classes that win somewhere in the batch.

    Every op exports to ONNX (ArgMax, Unique, Gather, Resize), so `export --argmax` keeps VIM in the graph.
    """
    present = torch.unique(logits.argmax(1))  # P sorted class ids
    picked = resize(logits.index_select(1, present), size, align_corners)  # B×P×H×W
    return present[picked.argmax(1)]  # B×H×W class ids


class PPMobileSeg(SegmentationModel):
    """PP-MobileSeg; see the module docstring.

    Args:
        num_classes: output classes K.
        size: `base` or `tiny` (the entrypoints fix it).
        upsample: `vim` (the reference's inference path, used at ≥ 30 classes) or `interpolate`.
        drop_path_rate: stochastic depth, rising linearly from 0 to this over each transformer stage's blocks.
        dropout: Dropout2d rate before the classifier.
    """

    def __init__(self, num_classes: int = 150, size: str = "base", upsample: str = "vim",
                 drop_path_rate: float = 0.1, dropout: float = 0.1):
        super().__init__()
        if size not in VARIANTS:
            raise ConfigError(f"PPMobileSeg: size='{size}' is not one of {', '.join(VARIANTS)}")
        if upsample not in UPSAMPLE_MODES:
            raise ConfigError(f"PPMobileSeg: upsample='{upsample}' is not one of {', '.join(UPSAMPLE_MODES)}")
        backbone_cfg, aam = VARIANTS[size]
        self.num_classes, self.upsample = num_classes, upsample
        self.backbone = StrideFormer(backbone_cfg, drop_path_rate)
        self.decoder = AAM(self.encoder_channels[1:], AAM_CHANNELS, **aam)
        self.head = PPMobileSegHead(AAM_CHANNELS, num_classes, dropout)

    @property
    def vim_active(self) -> bool:
        """Whether `predict_labels` runs VIM: eval mode, `upsample="vim"` and at least 30 classes."""
        return self.upsample == "vim" and self.num_classes >= VIM_MIN_CLASSES and not self.training

    def predict_labels(self, x: Tensor) -> Tensor:
        """B×3×H×W -> B×H×W int64: VIM when `vim_active`, else the argmax of the full logits."""
        if not self.vim_active:
            return super().predict_labels(x)
        return vim_labels(self.head_taps(x)["logits"], x.shape[-2:], self.upsample_align_corners)

    predict_labels.argmax_of_logits = lambda model: not model.vim_active  # see `inference.labels_are_argmax`


# segkd key -> PaddleSeg key (the released .pdparams layout); BatchNorm statistics are renamed by `pdparams`
_PADDLE_RULES: list[layouts.Rule] = [
    (r"^backbone\.stem\.", "backbone.smb1.conv."),
    (r"^backbone\.stages\.(\d)\.", lambda m: f"backbone.smb{int(m[1]) + 1}.blocks."),
    (r"\.conv_pw\.", ".expand_conv.c."), (r"\.bn1\.", ".expand_conv.bn."),
    (r"\.conv_dw\.", ".bottleneck_conv.c."), (r"\.bn2\.", ".bottleneck_conv.bn."),
    (r"\.se\.conv_reduce\.", ".mid_se.conv1."), (r"\.se\.conv_expand\.", ".mid_se.conv2."),
    (r"\.conv_pwl\.", ".linear_conv.c."), (r"\.bn3\.", ".linear_conv.bn."),
    (r"^backbone\.transformers\.(\d)\.", lambda m: f"backbone.trans{int(m[1]) + 1}.transformer_blocks."),
    (r"\.stride_conv\.conv\.", ".stride_conv.0."), (r"\.stride_conv\.bn\.", ".stride_conv.1."),
    (r"\.(proj|proj_encode_row|proj_encode_column)\.conv\.", r".\1.1.c."),  # Sequential(act, Conv2DBN)
    (r"\.(proj|proj_encode_row|proj_encode_column)\.bn\.", r".\1.1.bn."),
    (r"^(backbone\.smb1\.conv|.*\.(?:to_[qkv]|dwconv|pwconv|fc1|fc2))\.conv\.", r"\1.c."),  # Conv2DBN's conv
    (r"^decoder\.embed\.", "backbone.inj_module.embedding_list."),
    (r"^decoder\.gate\.", "backbone.inj_module.act_embedding_list."),
    (r"^head\.", "decode_head."),
]


def paddle_key(key: str) -> str:
    """A segkd PP-MobileSeg key under PaddleSeg's name (BatchNorm statistics aside)."""
    return layouts.apply_rules(_PADDLE_RULES, key)


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: PPMobileSeg) -> dict[str, Tensor]:
    """Map a PaddleSeg state dict (`backbone.smb1...`, `decode_head...`) onto segkd's keys; any other layout
    passes through unchanged."""
    if not any(k.startswith("backbone.smb1.") for k in state_dict):
        return state_dict
    return pdparams.from_paddle(state_dict, model, paddle_key, "PaddleSeg PP-MobileSeg checkpoint")


def load_backbone(model: PPMobileSeg, path: str | None) -> str:
    raise ConfigError(f"{model.arch}: no ImageNet backbone weights are wired up; load a whole PaddleSeg model "
                      "with model.weights=FILE.pdparams")


def _cfg(**kwargs) -> dict:
    defaults = dict(
        input_size=(3, 512, 512), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), num_classes=150,
        source="PaddleSeg configs/pp_mobileseg/README.md (model.pdparams links), ADE20K",
    )
    return {**defaults, **kwargs}


default_cfgs: dict[str, dict] = {
    "pp_mobileseg_base.ade20k": _cfg(val_miou=41.57),
    "pp_mobileseg_tiny.ade20k": _cfg(val_miou=36.39),
}


def _create_pp_mobileseg(arch: str, pretrained: bool, fixed: dict, **kwargs) -> PPMobileSeg:
    return build_model_with_cfg(
        PPMobileSeg, arch, pretrained, default_cfg=default_cfgs[f"{arch}.ade20k"],
        checkpoint_filter_fn=checkpoint_filter_fn, load_backbone=load_backbone, fixed=fixed, **kwargs,
    )


@register_model
def pp_mobileseg_base(pretrained: bool = False, **kwargs) -> PPMobileSeg:
    """PP-MobileSeg-Base (StrideFormer-Base, AAMSx8): 5,943,878 params with 150 classes."""
    return _create_pp_mobileseg("pp_mobileseg_base", pretrained, dict(size="base"), **kwargs)


@register_model
def pp_mobileseg_tiny(pretrained: bool = False, **kwargs) -> PPMobileSeg:
    """PP-MobileSeg-Tiny (StrideFormer-Tiny, AAM): 1,492,298 params with 150 classes."""
    return _create_pp_mobileseg("pp_mobileseg_tiny", pretrained, dict(size="tiny"), **kwargs)
