"""Swin-T-Att-UNet: FastSegFormer's teacher (Cai et al. 2024, caixiongjiang/FastSegFormer `swinTS_Att_Unet`).

    image ─ Swin-T (timm, + final LayerNorm) ─ stage1..stage4                       (H/4 .. H/32)
    image ─ MaxPool ×2 ─ DoubleConv ─ shallow skip                                  (H/2)
    stage4 ─ bottle (3×3) ─ 4 × [up ×2 (nearest) + conv, attention-gated skip, concat, DoubleConv]
           ─ ×2 bilinear ─ 3×3 conv ─ logits                                      (H)

Skips of the 4 up blocks: stage3, stage2, stage1, the shallow CNN branch. Taps: `stage1`..`stage4` (raw stage
outputs; stage4 after the final LayerNorm), `bottle`, `a3` (H/8), `a1` (H/2), `logits` (input size).
Slots: `backbone` (timm Swin-T), `decoder` (`AttUNetDecoder`: CNN branch, bottle, up blocks), `head` (×2, 3×3 conv).
49,229,322 params; 77.8 GMACs (78.4 fvcore GFLOPs) at 512.

Swin windows: any input whose sides are multiples of 32 runs (windows are padded, the attention mask is built per
input). The reference pads a map to whole windows *before* the cyclic shift, timm pads after it; the two differ
when a side is not a multiple of 7 (every stage at 512). segkd follows the reference so its released weights
give the reference's outputs; it also keeps the shift in stage 4 at 224 (7×7 tokens), as the reference does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformerBlock, window_partition, window_reverse
from torch import Tensor, nn

from segkd.models import layouts
from segkd.models.base import SegmentationModel
from segkd.models.builder import build_model_with_cfg
from segkd.models.layers import ConvClassifier, ConvBN, ConvBNReLU, init_conv_bn_normal_
from segkd.models.registry import register_model
from segkd.models.timm_backbone import TimmBackbone


class PadFirstSwinBlock(SwinTransformerBlock):
    """timm's Swin block with the original segmentation code's window order: pad to whole windows, then shift."""

    def _attn(self, x: Tensor) -> Tensor:
        _, h, w, c = x.shape  # B×H×W×C
        wh, ww = self.window_size
        x = F.pad(x, (0, 0, 0, -w % ww, 0, -h % wh))  # B×Hp×Wp×C
        hp, wp = x.shape[1:3]
        shifted = any(self.shift_size)
        if shifted:
            x = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2))
        windows = window_partition(x, self.window_size).view(-1, self.window_area, c)  # B·nW×wh·ww×C
        windows = self.attn(windows, mask=self.get_attn_mask(x) if shifted else None)
        x = window_reverse(windows.view(-1, wh, ww, c), self.window_size, hp, wp)
        if shifted:
            x = torch.roll(x, shifts=self.shift_size, dims=(1, 2))
        return x[:, :h, :w].contiguous()


def use_pad_first_windows(module: nn.Module) -> None:
    """Switch every timm Swin block inside `module` to `PadFirstSwinBlock` (same weights, reference order)."""
    for m in module.modules():
        if type(m) is SwinTransformerBlock:
            m.__class__ = PadFirstSwinBlock


class DoubleConv(nn.Sequential):
    """U-Net block: 2 × (3×3 conv with bias + BN + ReLU)."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__(ConvBNReLU(in_chs, out_chs, 3, bias=True), ConvBNReLU(out_chs, out_chs, 3, bias=True))


class AttentionGate(nn.Module):
    """Attention U-Net gate: x · σ(BN(conv(ReLU(BN(conv g) + BN(conv x))))), every conv 1×1 with bias."""

    def __init__(self, chs: int, inter_chs: int):
        super().__init__()
        self.g_proj = ConvBN(chs, inter_chs, 1, bias=True)
        self.x_proj = ConvBN(chs, inter_chs, 1, bias=True)
        self.psi = ConvBN(inter_chs, 1, 1, bias=True)

    def forward(self, g: Tensor, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.psi(F.relu(self.g_proj(g) + self.x_proj(x))))  # B×C×h×w


class AttentionUpBlock(nn.Module):
    """Up ×2 (nearest) + 3×3 ConvBNReLU; skip → 1×1 ConvBNReLU (when widths differ) → gate → 1×1 conv;
    concat [up, gated skip] → DoubleConv."""

    def __init__(self, in_chs: int, out_chs: int, skip_chs: int, merge_chs: int):
        super().__init__()
        self.up = ConvBNReLU(in_chs, out_chs, 3, bias=True)
        self.skip = ConvBNReLU(skip_chs, out_chs, 1, bias=True) if skip_chs != out_chs else nn.Identity()
        self.gate = AttentionGate(out_chs, out_chs // 2)
        self.merge = nn.Conv2d(out_chs, merge_chs, 1)
        self.fuse = DoubleConv(out_chs + merge_chs, out_chs)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        d = self.up(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # B×out×2h×2w
        e = self.merge(self.gate(d, self.skip(skip)))  # B×merge×2h×2w
        return self.fuse(torch.cat([d, e], dim=1))  # B×out×2h×2w


SWIN_T = "swin_tiny_patch4_window7_224"
#: timm features_only key -> microsoft/Swin-Transformer's: PatchMerging ends a stage there, starts one in timm
SWIN_ORIGINAL: list[layouts.Rule] = [
    (r"^layers_(\d)\.downsample\.", lambda m: f"layers.{int(m[1]) - 1}.downsample."),
    (r"^layers_(\d)\.", r"layers.\1."),
]
BASE = 64  # U-Net width; the decoder runs at 16, 8, 4, 2 × BASE
# (out, merge) of the up blocks, deepest first: the reference's convert1..4 widths 2·embed, embed, 2·base, base
DECODER = ((8 * BASE, 192), (4 * BASE, 96), (2 * BASE, 2 * BASE), (BASE, BASE))


class AttUNetDecoder(nn.Module):
    """The decoder slot: shallow CNN branch on the image (H/2), 3×3 `bottle` on stage 4, then the four
    attention-gated up blocks with skips stage3, stage2, stage1, CNN branch; taps `bottle`, `a3`, `a1`."""

    def __init__(self, encoder_channels: Sequence[int]):
        super().__init__()
        c1, c2, c3, c4 = encoder_channels  # 96, 192, 384, 768
        self.cnn_branch = nn.Sequential(nn.MaxPool2d(2), DoubleConv(3, BASE))
        self.bottle = ConvBNReLU(c4, 16 * BASE, 3)
        blocks, in_chs = [], 16 * BASE
        for (out_chs, merge_chs), skip_chs in zip(DECODER, (c3, c2, c1, BASE)):
            blocks.append(AttentionUpBlock(in_chs, out_chs, skip_chs, merge_chs))
            in_chs = out_chs
        self.blocks = nn.ModuleList(blocks)

    def forward(self, feats: Sequence[Tensor], image: Tensor) -> "OrderedDict[str, Tensor]":
        taps = OrderedDict(bottle=self.bottle(feats[3]))  # B×1024×H/32×W/32
        d = taps["bottle"]
        skips = (feats[2], feats[1], feats[0], self.cnn_branch(image))  # H/16, H/8, H/4, H/2
        for i, (block, skip) in enumerate(zip(self.blocks, skips)):
            d = block(d, skip)
            if i == 1:
                taps["a3"] = d  # B×256×H/8×W/8
        taps["a1"] = d  # B×64×H/2×W/2
        return taps


class SwinAttUNet(SegmentationModel):
    """Swin-T-Att-UNet; see the module docstring for the layout and taps.

    Args:
        num_classes: output classes K.
        drop_path_rate: Swin stochastic depth (0.1 in the reference).
    """

    #: module moves since the first release (segkd checkpoints saved before them still load)
    legacy_keys = (
        (r"^decoder\.(\d)\.", r"decoder.blocks.\1."), (r"^cnn_branch\.", "decoder.cnn_branch."),
        (r"^bottle\.", "decoder.bottle."),
    )

    def __init__(self, num_classes: int = 4, drop_path_rate: float = 0.1):
        super().__init__()
        self.backbone = TimmBackbone(
            SWIN_T, out_norm=nn.LayerNorm, out_norms={3: "norm"},
            original_key=partial(layouts.apply_rules, SWIN_ORIGINAL),
            strict_img_size=False, always_partition=True, drop_path_rate=drop_path_rate,
        )
        use_pad_first_windows(self.backbone)
        self.decoder = AttUNetDecoder(self.encoder_channels)
        self.head = ConvClassifier(BASE, num_classes, kernel_size=3, upsample=2)  # B×K×H×W
        init_conv_bn_normal_(self)


REFERENCE_BACKBONE = "common_backbone."  # the reference repository's backbone prefix
_CONV_BN = {"conv": "0", "bn": "1"}
_MODULE_RULES: list[layouts.ModuleRule] = [
    (r"decoder\.cnn_branch\.1\.([01])\.(conv|bn)", lambda m: f"cnn_up.1.conv.{3 * int(m[1]) + int(_CONV_BN[m[2]])}"),
    (r"decoder\.bottle\.(conv|bn)", lambda m: f"bottle.{_CONV_BN[m[1]]}"),
    (r"decoder\.blocks\.(\d)\.up\.(conv|bn)", lambda m: f"up{4 - int(m[1])}.up.{int(_CONV_BN[m[2]]) + 1}"),
    (r"decoder\.blocks\.(\d)\.skip\.(conv|bn)", lambda m: f"change{int(m[1]) + 1}.{_CONV_BN[m[2]]}"),
    (r"decoder\.blocks\.(\d)\.gate\.(\w+)\.(conv|bn)",
     lambda m: f"Att{4 - int(m[1])}.{dict(g_proj='W_g', x_proj='W_x', psi='psi')[m[2]]}.{_CONV_BN[m[3]]}"),
    (r"decoder\.blocks\.(\d)\.merge", lambda m: f"convert{int(m[1]) + 1}"),
    (r"decoder\.blocks\.(\d)\.fuse\.([01])\.(conv|bn)",
     lambda m: f"conv{4 - int(m[1])}.conv.{3 * int(m[2]) + int(_CONV_BN[m[3]])}"),
    (r"head", lambda m: "final_up_conv.1"),
]


def reference_keys(model: SwinAttUNet) -> dict[str, str]:
    """segkd key -> key in the reference repository's state dict, including the index buffers it saves."""
    return layouts.reference_keys(model, _MODULE_RULES, "Swin-T-Att-UNet", REFERENCE_BACKBONE)


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: SwinAttUNet) -> dict[str, Tensor]:
    """Map a reference teacher state dict (`common_backbone.layers.*`, `Att1..4`, `up1..4`, ...) onto segkd's
    keys; any other layout passes through unchanged."""
    return layouts.from_reference_checkpoint(state_dict, model, _MODULE_RULES, "Swin-T-Att-UNet", REFERENCE_BACKBONE)


def _cfg(**kwargs) -> dict:
    """Family defaults of a released weight file (fetched by hand from `source`)."""
    defaults = dict(
        input_size=(3, 512, 512), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), num_classes=4,
        source="github.com/caixiongjiang/FastSegFormer (README teacher 'ckpt' link), Orange_Navel",
    )
    return {**defaults, **kwargs}


default_cfgs: dict[str, dict] = {
    "swin_t_att_unet.orange_navel": _cfg(test_miou=90.53),
}


@register_model
def swin_t_att_unet(pretrained: bool = False, **kwargs) -> SwinAttUNet:
    """Swin-T-Att-UNet teacher: 49,229,322 params, 77.8 GMACs at 512."""
    return build_model_with_cfg(
        SwinAttUNet, "swin_t_att_unet", pretrained, default_cfg=default_cfgs["swin_t_att_unet.orange_navel"],
        checkpoint_filter_fn=checkpoint_filter_fn, **kwargs,
    )
