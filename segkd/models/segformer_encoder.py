"""Mix Transformer (MiT) encoder of SegFormer B0-B5 (Xie et al. 2021), with its patch embeddings exposed.

Each of the four stages is: overlapping patch embedding (strided conv + LayerNorm) -> pre-norm transformer blocks
with spatial-reduction attention and a Mix-FFN (fc1 -> depthwise 3×3 -> GELU -> fc2) -> LayerNorm. Strides 4, 8,
16, 32; `forward` returns the stage outputs and the patch-embedding maps by name (`stage1..4`, `embed1..4`).

Written here rather than taken from timm's `pvt_v2_bX(mlp_ratios=(4, 4, 4, 4), features_only=True)`, which has the
same layers, because:
- SEKD distils the patch embeddings (after the patch-embed LayerNorm, before the blocks). timm's `features_only`
  model returns the stage outputs only, so the embeddings would need forward hooks on `stages[i].downsample`.
- Foreign checkpoints (Hugging Face, NVlabs/mmseg, SEKD/TransKD, bubbliiiing) must load by key renames alone and
  match Hugging Face's `SegformerForSemanticSegmentation` numerically; owning the ~150 lines keeps that exact and
  independent of timm's internal layout, which has changed between releases.
- timm's defaults are not MiT's (mlp_ratios 8,8,4,4 for b0-b4, drop_path 0), so every call would have to
  override them anyway.
The layers are the same: with keys renamed, timm 1.0.31 `pvt_v2_b0(mlp_ratios=(4, 4, 4, 4), features_only=True)`
gives this encoder's stage outputs within 6e-6.

Facts kept from MiT: qkv bias, head dim 32 (B0) / 64 (B1-B5), block and stage LayerNorm eps 1e-6, patch-embed and
spatial-reduction LayerNorm eps 1e-5 (PyTorch default), stochastic depth linear 0 -> `drop_path_rate` over all
blocks, init trunc_normal(0.02) for Linear, LayerNorm 1/0, conv normal(0, sqrt(2 / fan_out)).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn

#: LayerNorm eps of the blocks and the per-stage norms (the patch-embed and SR norms keep PyTorch's 1e-5)
BLOCK_NORM_EPS = 1e-6


def tokens_to_map(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """B×N×C tokens -> B×C×H×W map."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *hw)


def map_to_tokens(x: Tensor) -> Tensor:
    """B×C×H×W map -> B×N×C tokens (N = H·W)."""
    return x.flatten(2).transpose(1, 2)


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlapping windows (7/4/3 in stage 1, 3/2/1 after), then LayerNorm on the tokens."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        x = self.proj(x)  # B×C×H/s×W/s
        hw = (x.shape[2], x.shape[3])
        return self.norm(map_to_tokens(x)), hw  # B×N×C


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys/values come from a map shrunk `sr_ratio`× by a strided conv + LayerNorm."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio) if sr_ratio > 1 else None
        self.norm = nn.LayerNorm(dim) if sr_ratio > 1 else None

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        b, n, c = x.shape
        q = self.q(x).reshape(b, n, self.num_heads, -1).transpose(1, 2)  # B×heads×N×d
        if self.sr is not None:
            x = self.norm(map_to_tokens(self.sr(tokens_to_map(x, hw))))  # B×N/sr²×C
        k, v = self.kv(x).reshape(b, -1, 2, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # B×heads×N×d, scale d^-0.5
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class MixFFN(nn.Module):
    """fc1 -> depthwise 3×3 conv on the token map (positional cue) -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        x = self.dwconv(tokens_to_map(self.fc1(x), hw))  # B×4C×H×W
        return self.fc2(self.act(map_to_tokens(x)))


class MiTBlock(nn.Module):
    """Pre-norm block: x + DropPath(Attn(LN(x))), then x + DropPath(MixFFN(LN(x)))."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        return x + self.drop_path(self.mlp(self.norm2(x), hw))


class MiTStage(nn.Module):
    """Patch embedding -> blocks -> LayerNorm; returns (embedding map, stage output map)."""

    def __init__(
        self, in_chans: int, dim: int, depth: int, num_heads: int, sr_ratio: int, mlp_ratio: float,
        patch_size: int, stride: int, drop_paths: Sequence[float],
    ):
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(in_chans, dim, patch_size, stride)
        self.blocks = nn.ModuleList(MiTBlock(dim, num_heads, sr_ratio, mlp_ratio, drop_paths[i]) for i in range(depth))
        self.norm = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x, hw = self.patch_embed(x)  # B×N×C
        embed = tokens_to_map(x, hw)  # B×C×H×W, after the patch-embed LayerNorm
        for block in self.blocks:
            x = block(x, hw)
        return embed, tokens_to_map(self.norm(x), hw)


class MixVisionTransformer(nn.Module):
    """MiT backbone: four stages at strides 4, 8, 16, 32; `feature_info` / `out_channels` describe them."""

    def __init__(
        self,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        depths: Sequence[int] = (3, 4, 6, 3),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        in_chans: int = 3,
    ):
        super().__init__()
        drop_paths = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        patches = ((7, 4), (3, 2), (3, 2), (3, 2))  # (kernel, stride) of each patch embedding
        self.stages = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(embed_dims, depths)):
            first = sum(depths[:i])
            self.stages.append(MiTStage(
                embed_dims[i - 1] if i else in_chans, dim, depth, num_heads[i], sr_ratios[i], mlp_ratio,
                *patches[i], drop_paths[first : first + depth],
            ))
        self.out_channels = list(embed_dims)
        self.feature_info = [
            dict(num_chs=c, reduction=2 ** (i + 2), module=f"stages.{i}") for i, c in enumerate(embed_dims)
        ]
        self.apply(init_mit_weights)

    def forward_with_embeddings(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """(patch-embedding maps, stage output maps), each B×C_i×H/s_i×W/s_i for s_i in 4, 8, 16, 32."""
        embeds, feats = [], []
        for stage in self.stages:
            embed, x = stage(x)
            embeds.append(embed)
            feats.append(x)
        return embeds, feats

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        """Named maps: `stage1..4` (outputs, B×C_i×H/s×W/s for s in 4, 8, 16, 32), then `embed1..4` (patch
        embeddings, same shapes); the `stage*` entries feed the decoder."""
        embeds, feats = self.forward_with_embeddings(x)
        named = OrderedDict((f"stage{i + 1}", f) for i, f in enumerate(feats))
        return named | OrderedDict((f"embed{i + 1}", e) for i, e in enumerate(embeds))


def init_mit_weights(m: nn.Module) -> None:
    """MiT init: trunc_normal(0.02) Linear with zero bias, LayerNorm 1/0, conv normal(0, sqrt(2 / fan_out))."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
