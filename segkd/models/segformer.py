"""SegFormer B0-B5 (Xie et al. 2021): MiT encoder + all-MLP decoder; the SEKD student (B0) and teachers (B2/B3).

Wiring: `MixVisionTransformer` (segformer_encoder.py) -> `AllMLPDecoder` (per-stage Linear C_i -> E, upsample to
1/4, concat [c4, c3, c2, c1], 1×1 conv + BN + ReLU) -> Dropout2d(0.1) -> 1×1 conv to K classes at 1/4 resolution.
E is 256 for B0/B1 and 768 for B2-B5.

Taps (`forward_taps`), for an H×W input:
- `stage1`..`stage4`: encoder stage outputs, B×C_i×H/s×W/s for s = 4, 8, 16, 32 (after the stage LayerNorm).
- `embed1`..`embed4`: patch embeddings after the patch-embed LayerNorm and before the blocks, given as
  B×C_i×H/s×W/s maps (SEKD's reference holds them as B×N×C tokens: `map.flatten(2).transpose(1, 2)`).
- `fusion`: the decoder's fused map after linear_fuse (conv + BN + ReLU), B×E×H/4×W/4.
- `logits`: B×K×H/4×W/4 (the base class upsamples `forward`'s output to H×W, bilinear, align_corners=False).

Weights (`segkd.models.load_weights`, via `checkpoint_filter_fn`) load from segkd checkpoints and from the
Hugging Face (`transformers` 4.x and 5.x `SegformerForSemanticSegmentation`), NVlabs/mmseg 0.x, bubbliiiing and
SEKD/TransKD layouts; `backbone_weights=FILE` loads an ImageNet MiT file (NVlabs `mit_bX.pth`, HF `nvidia/mit-bX`)
into the encoder only, and `pretrained=True` fetches that file (`pytorch_model.bin` of `nvidia/mit-bX`) through
the Hugging Face cache (`HF_HOME`, `HF_HUB_OFFLINE`).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import hf_hub_download
from torch import Tensor, nn

from segkd.errors import WeightsError, first_line
from segkd.models.base import SegmentationModel
from segkd.models.builder import build_model_with_cfg
from segkd.models.checkpoint import load_state_strict, read_weights_file, unwrap_state_dict
from segkd.models.inference import IMAGENET_MEAN, IMAGENET_STD
from segkd.models.layers import ConvClassifier
from segkd.models.registry import register_model
from segkd.models.segformer_encoder import MixVisionTransformer, map_to_tokens


class AllMLPDecoder(nn.Module):
    """Per-stage Linear to E channels, upsample to the stage-1 size, concat [c4, c3, c2, c1], fuse with 1×1 conv."""

    def __init__(self, in_channels: Sequence[int], channels: int):
        super().__init__()
        self.linear_c = nn.ModuleList(nn.Linear(c, channels) for c in in_channels)
        fuse_conv = nn.Conv2d(channels * len(in_channels), channels, 1, bias=False)
        nn.init.kaiming_normal_(fuse_conv.weight, mode="fan_out", nonlinearity="relu")  # mmcv ConvModule's init
        self.linear_fuse = nn.Sequential(OrderedDict(
            conv=fuse_conv, bn=nn.BatchNorm2d(channels), act=nn.ReLU(inplace=True),
        ))

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        size = feats[0].shape[-2:]  # H/4×W/4
        maps = []
        for x, linear in zip(feats, self.linear_c):
            b, _, h, w = x.shape
            x = linear(map_to_tokens(x)).transpose(1, 2).reshape(b, -1, h, w)  # B×E×h×w
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            maps.append(x)
        return self.linear_fuse(torch.cat(maps[::-1], dim=1))  # B×4E×H/4×W/4 -> B×E×H/4×W/4


class SegFormer(SegmentationModel):
    """SegFormer: MiT encoder, all-MLP decoder, dropout + 1×1 classifier; logits at 1/4 of the input size.

    `embed_dims`/`depths`/`num_heads`/`sr_ratios`/`mlp_ratio` shape the encoder (defaults: B2), `decoder_channels`
    is E, `drop_path_rate` the last block's stochastic depth, `dropout` the Dropout2d before the classifier.
    """

    def __init__(
        self,
        num_classes: int = 19,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        depths: Sequence[int] = (3, 4, 6, 3),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        mlp_ratio: float = 4.0,
        decoder_channels: int = 768,
        drop_path_rate: float = 0.1,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.backbone = MixVisionTransformer(embed_dims, depths, num_heads, sr_ratios, mlp_ratio, drop_path_rate)
        self.decoder = AllMLPDecoder(self.encoder_channels, decoder_channels)  # -> `fusion` B×E×H/4×W/4
        self.head = ConvClassifier(decoder_channels, num_classes, dropout=dropout)  # B×K×H/4×W/4


def _stage(template: str) -> Callable[[re.Match], str]:
    """A replacement that turns a 1-based stage number (group 1) into segkd's 0-based index."""
    return lambda m: template.format(int(m[1]) - 1)


# Foreign key layouts -> segkd names, applied in order to every key (segkd's own names pass through unchanged).
# HF transformers 4.x: segformer.encoder.{patch_embeddings.i, block.i.j, layer_norm.i}, decode_head.linear_c.i;
# HF 5.x: segformer.stages.i.{patch_embeddings, blocks.j, layer_norm}, decode_head.linear_projections.i;
# NVlabs/mmseg 0.x and bubbliiiing: backbone.{patch_embedN, blockN.j, normN}, decode_head.linear_cN/linear_fuse/
# linear_pred; SEKD/TransKD: the same without the backbone./decode_head. prefixes (N is 1-based).
_KEY_RULES: list[tuple[str, str | Callable[[re.Match], str]]] = [
    (r"^segformer\.encoder\.patch_embeddings\.(\d)\.", r"backbone.stages.\1.patch_embeddings."),
    (r"^segformer\.encoder\.block\.(\d)\.", r"backbone.stages.\1.blocks."),
    (r"^segformer\.encoder\.layer_norm\.(\d)\.", r"backbone.stages.\1.norm."),
    (r"^segformer\.stages\.(\d)\.layer_norm\.", r"backbone.stages.\1.norm."),
    (r"^segformer\.stages\.", "backbone.stages."),
    (r"\.patch_embeddings\.layer_norm\.", ".patch_embed.norm."),
    (r"\.patch_embeddings\.", ".patch_embed."),
    (r"^(?:backbone\.)?patch_embed(\d)\.", _stage("backbone.stages.{}.patch_embed.")),
    (r"^(?:backbone\.)?block(\d)\.", _stage("backbone.stages.{}.blocks.")),
    (r"^(?:backbone\.)?norm(\d)\.", _stage("backbone.stages.{}.norm.")),
    (r"\.(?:layer_norm_1|layernorm_before)\.", ".norm1."),
    (r"\.(?:layer_norm_2|layernorm_after)\.", ".norm2."),
    (r"\.attention\.(?:self\.query|q_proj)\.", ".attn.q."),
    (r"\.attention\.(?:self\.key|k_proj)\.", ".attn.k."),
    (r"\.attention\.(?:self\.value|v_proj)\.", ".attn.v."),
    (r"\.attention\.(?:self\.sr|sequence_reduction\.sequence_reduction)\.", ".attn.sr."),
    (r"\.attention\.(?:self\.layer_norm|sequence_reduction\.layer_norm)\.", ".attn.norm."),
    (r"\.attention\.(?:output\.dense|o_proj)\.", ".attn.proj."),
    (r"\.mlp\.dense1\.", ".mlp.fc1."),
    (r"\.mlp\.dense2\.", ".mlp.fc2."),
    (r"\.mlp\.dwconv\.dwconv\.", ".mlp.dwconv."),
    (r"^decode_head\.(?:linear_c|linear_projections)\.(\d)\.proj\.", r"decoder.linear_c.\1."),
    (r"^decode_head\.linear_fuse\.weight$", "decoder.linear_fuse.conv.weight"),
    (r"^decode_head\.batch_norm\.", "decoder.linear_fuse.bn."),
    (r"^decode_head\.classifier\.", "head."),
    (r"^(?:decode_head\.)?linear_c(\d)\.proj\.", _stage("decoder.linear_c.{}.")),
    (r"^(?:decode_head\.)?linear_fuse\.(conv|bn)\.", r"decoder.linear_fuse.\1."),
    (r"^(?:decode_head\.)?linear_pred\.", "head."),
]
_KEY_RULES_COMPILED = [(re.compile(p), r) for p, r in _KEY_RULES]
#: keys that foreign files carry but no layer uses: mmseg's BaseDecodeHead classifier (SegFormerHead predicts with
#: linear_pred); removed before the strict load
_UNUSED_KEYS = re.compile(r"^decode_head\.conv_seg\.")


def _rename(key: str) -> str:
    for pattern, repl in _KEY_RULES_COMPILED:
        key = pattern.sub(repl, key)
    return key


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: SegFormer) -> dict[str, Tensor]:
    """Map a foreign SegFormer state dict to segkd names: key renames, HF's separate k/v joined into MiT's kv.

    Keys that no rule maps keep their names, so the strict load that follows fails naming them.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if not _UNUSED_KEYS.match(key):
            out[_rename(key)] = value
    for k_key in [k for k in out if ".attn.k." in k]:  # HF: key and value projections -> one kv Linear
        v_key = k_key.replace(".attn.k.", ".attn.v.")
        if v_key in out:
            out[k_key.replace(".attn.k.", ".attn.kv.")] = torch.cat([out.pop(k_key), out.pop(v_key)], dim=0)
    for key, value in model.state_dict().items():  # BN step counters: absent from some files, unused in eval
        stats = key.replace("num_batches_tracked", "running_mean")
        if key.endswith("num_batches_tracked") and key not in out and stats in out:
            out[key] = torch.zeros_like(value)
    return out


def load_backbone_weights(model: SegFormer, path: str | Path) -> SegFormer:
    """Load an ImageNet MiT file (any layout above; classifier keys dropped) into `model.backbone`, strictly."""
    state = checkpoint_filter_fn(unwrap_state_dict(read_weights_file(path), path), model)
    prefix = "backbone."
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    load_state_strict(model.backbone, state, path)
    return model


def _load_backbone(model: SegFormer, path: str | None) -> str:
    """The builder's backbone hook: a local file, or `nvidia/mit-bX`'s weights from the Hugging Face cache/Hub."""
    if path is not None:
        load_backbone_weights(model, path)
        return str(path)
    hub_id = default_cfgs[f"{model.arch}.mit_imagenet"]["hf_hub_id"]
    load_backbone_weights(model, _hub_file(model.arch, hub_id))
    return f"hf-hub:{hub_id}"


def _hub_file(name: str, hub_id: str) -> str:
    """The repository's weights file (`model.safetensors`, else `pytorch_model.bin`) from the Hub or its cache."""
    error = None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        try:
            return hf_hub_download(hub_id, filename)
        except Exception as e:  # noqa: BLE001  (offline with nothing cached, missing file, HTTP errors)
            error = error or e
    raise WeightsError(
        f"{name}: no ImageNet MiT weights from the Hugging Face Hub '{hub_id}' ({first_line(error, 120)}); "
        "with no network, set model.backbone_weights=FILE to a local file"
    )


def _cfg(hf_hub_id: str, **kwargs) -> dict:
    """Family defaults of a released weight file; `hf_hub_id` says where to fetch it by hand."""
    defaults = dict(input_size=(3, 512, 512), mean=IMAGENET_MEAN, std=IMAGENET_STD, num_classes=150)
    return {**defaults, "hf_hub_id": hf_hub_id, **kwargs}


_VARIANTS = ("b0", "b1", "b2", "b3", "b4", "b5")
default_cfgs: dict[str, dict] = {
    **{f"segformer_{v}.mit_imagenet": _cfg(f"nvidia/mit-{v}", num_classes=1000, backbone_only=True) for v in _VARIANTS},
    **{f"segformer_{v}.nvidia_ade": _cfg(f"nvidia/segformer-{v}-finetuned-ade-512-512") for v in _VARIANTS[:5]},
    "segformer_b5.nvidia_ade": _cfg("nvidia/segformer-b5-finetuned-ade-640-640", input_size=(3, 640, 640)),
    **{
        f"segformer_{v}.nvidia_cityscapes": _cfg(
            f"nvidia/segformer-{v}-finetuned-cityscapes-1024-1024", input_size=(3, 1024, 1024), num_classes=19
        )
        for v in _VARIANTS
    },
}


def _create_segformer(variant: str, pretrained: bool, fixed: dict, **kwargs) -> SegFormer:
    return build_model_with_cfg(
        SegFormer, variant, pretrained, default_cfg=default_cfgs[f"{variant}.nvidia_ade"],
        checkpoint_filter_fn=checkpoint_filter_fn, load_backbone=_load_backbone, fixed=fixed, **kwargs,
    )


_WIDE = dict(embed_dims=(64, 128, 320, 512))  # B1-B5 widths (head dim 64); B0 is half as wide (head dim 32)


@register_model
def segformer_b0(pretrained: bool = False, **kwargs) -> SegFormer:
    arch = dict(embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2), decoder_channels=256)
    return _create_segformer("segformer_b0", pretrained, arch, **kwargs)


@register_model
def segformer_b1(pretrained: bool = False, **kwargs) -> SegFormer:
    arch = dict(_WIDE, depths=(2, 2, 2, 2), decoder_channels=256)
    return _create_segformer("segformer_b1", pretrained, arch, **kwargs)


@register_model
def segformer_b2(pretrained: bool = False, **kwargs) -> SegFormer:
    arch = dict(_WIDE, depths=(3, 4, 6, 3), decoder_channels=768)
    return _create_segformer("segformer_b2", pretrained, arch, **kwargs)


@register_model
def segformer_b3(pretrained: bool = False, **kwargs) -> SegFormer:
    arch = dict(_WIDE, depths=(3, 4, 18, 3), decoder_channels=768)
    return _create_segformer("segformer_b3", pretrained, arch, **kwargs)


@register_model
def segformer_b4(pretrained: bool = False, **kwargs) -> SegFormer:
    arch = dict(_WIDE, depths=(3, 8, 27, 3), decoder_channels=768)
    return _create_segformer("segformer_b4", pretrained, arch, **kwargs)


@register_model
def segformer_b5(pretrained: bool = False, **kwargs) -> SegFormer:
    arch = dict(_WIDE, depths=(3, 6, 40, 3), decoder_channels=768)
    return _create_segformer("segformer_b5", pretrained, arch, **kwargs)
