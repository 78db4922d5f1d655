"""StrideFormer ("MobileSegNet"), PP-MobileSeg's backbone: MobileNetV3 stages with strided Sea-attention
transformers after the 1/16 and 1/32 stages (PaddleSeg @d7975e7 `backbones/strideformer.py`, spec §1-2).

    image ─ stem (3×3 s2, hardswish) ─ stage1 (1/4) ─ stage2 (1/8) ─ stage3 + transformers.0 (1/16)
          ─ stage4 + transformers.1 (1/32)

Each transformer block is `x + SeaAttention(x)`, then `x + Mlp(x)` (no LayerNorm). Sea attention runs at half
the feature's resolution (a depthwise 3×3 stride-2 conv first, a bilinear resize back last): squeeze-axial
attention over the row means and the column means (with interpolated positional embeddings), plus a depthwise
"detail" branch over q, k, v that the attention output gates (hard sigmoid).

The backbone returns the four stage maps (`stage1`..`stage4` taps, strides 4, 8, 16, 32); PaddleSeg's AAM,
which it keeps inside its backbone, is segkd's decoder (`segkd.models.pp_mobileseg`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn

from segkd.models.layers import ConvBN, Hardsigmoid, Hardswish, mobilenetv3_block, resize

# one MobileNetV3 block: (kernel, expanded width, out width, SE, activation, stride)
BlockCfg = tuple[int, int, int, bool, str, int]
ACTIVATIONS = {"relu": nn.ReLU, "hardswish": Hardswish}
POS_EMBED_LEN = 16  # learned length of the axial positional embeddings (interpolated to the map's side)


class PaddleHardSigmoid(nn.Module):
    """Paddle's hard sigmoid as PaddleSeg's MobileNetV3 SE uses it: clip(0.2·x + 0.5, 0, 1) (not x/6 + 0.5)."""

    def forward(self, x: Tensor) -> Tensor:
        return (0.2 * x + 0.5).clamp(0.0, 1.0)


class SqueezeAxialPositionalEmbedding(nn.Module):
    """A learned `1×C×16` embedding, linearly resized to the squeezed axis' length N and added to `B×C×N`."""

    def __init__(self, dim: int, length: int = POS_EMBED_LEN):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, dim, length))

    def forward(self, x: Tensor) -> Tensor:  # B×C×N
        return x + F.interpolate(self.pos_embed, size=x.shape[-1], mode="linear", align_corners=False)


class SeaAttention(nn.Module):
    """Strided squeeze-axial attention with the detail-enhancement branch (spec §2b).

    q, k: `key_dim` per head; v: `attn_ratio·key_dim` per head. The row and column projections and the output
    projection start with BN γ = 0, as the reference initialises them.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: int = 2):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        nh_kd, dh = key_dim * num_heads, attn_ratio * key_dim * num_heads
        self.stride_conv = ConvBN(dim, dim, 3, stride=2, groups=dim, bias=True)
        self.to_q, self.to_k, self.to_v = ConvBN(dim, nh_kd), ConvBN(dim, nh_kd), ConvBN(dim, dh)
        self.pos_emb_rowq, self.pos_emb_rowk = (SqueezeAxialPositionalEmbedding(nh_kd) for _ in range(2))
        self.pos_emb_columnq, self.pos_emb_columnk = (SqueezeAxialPositionalEmbedding(nh_kd) for _ in range(2))
        self.proj_encode_row, self.proj_encode_column = ConvBN(dh, dh), ConvBN(dh, dh)
        self.proj = ConvBN(dh, dim)
        self.dwconv = ConvBN(2 * dh, 2 * dh, 3, groups=2 * dh)
        self.pwconv = ConvBN(2 * dh, dim)
        self.act = nn.ReLU6()
        self.gate = Hardsigmoid()
        for m in (self.proj_encode_row, self.proj_encode_column, self.proj):
            nn.init.zeros_(m.bn.weight)

    def axial(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Attention along one squeezed axis: q, k `B×nh_kd×N`, v `B×dh×N` -> `B×dh×N`."""
        b, _, n = q.shape
        q = q.reshape(b, self.num_heads, -1, n).transpose(-1, -2)  # B×h×N×kd
        k = k.reshape(b, self.num_heads, -1, n)  # B×h×kd×N
        v = v.reshape(b, self.num_heads, -1, n).transpose(-1, -2)  # B×h×N×d
        attn = (q @ k * self.scale).softmax(-1)  # B×h×N×N
        return (attn @ v).transpose(-1, -2).reshape(b, -1, n)  # B×dh×N

    def forward(self, x: Tensor) -> Tensor:  # B×C×H0×W0
        size = x.shape[-2:]
        x = self.stride_conv(x)  # B×C×H×W, H = H0/2
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)  # B×nh_kd×H×W (q, k), B×dh×H×W (v)
        detail = self.pwconv(self.act(self.dwconv(torch.cat([q, k, v], 1))))  # B×C×H×W
        row = self.axial(self.pos_emb_rowq(q.mean(-1)), self.pos_emb_rowk(k.mean(-1)), v.mean(-1))  # B×dh×H
        column = self.axial(self.pos_emb_columnq(q.mean(-2)), self.pos_emb_columnk(k.mean(-2)), v.mean(-2))
        row = self.proj_encode_row(self.act(row[..., None]))  # B×dh×H×1
        column = self.proj_encode_column(self.act(column[:, :, None]))  # B×dh×1×W
        out = self.gate(self.proj(self.act(v + row + column))) * detail  # B×C×H×W
        return resize(out, size)  # B×C×H0×W0


class Mlp(nn.Sequential):
    """1×1 conv-BN → depthwise 3×3 (bias) → ReLU6 → 1×1 conv-BN."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = ConvBN(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.ReLU6()
        self.fc2 = ConvBN(hidden, dim)


class SeaBlock(nn.Module):
    def __init__(self, dim: int, key_dim: int, num_heads: int, mlp_ratio: int, drop_path: float):
        super().__init__()
        self.attn = SeaAttention(dim, key_dim, num_heads)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.mlp(x))


@dataclass(frozen=True)
class StrideFormerConfig:
    """What differs between StrideFormer-Base and -Tiny (spec §2)."""

    stages: tuple[tuple[BlockCfg, ...], ...]  # four MobileNetV3 stages
    stem_chs: int
    embed_dims: tuple[int, int]  # widths of the stage-3 and stage-4 transformers (= those stages' outputs)
    depths: tuple[int, int]
    num_heads: int
    key_dims: tuple[int, int] = (16, 24)
    mlp_ratios: tuple[int, int] = (2, 4)


class StrideFormer(nn.Module):
    """The backbone; `forward(x)` -> `[stage1 (1/4), stage2 (1/8), stage3 (1/16), stage4 (1/32)]`."""

    def __init__(self, cfg: StrideFormerConfig, drop_path_rate: float = 0.1):
        super().__init__()
        self.stem = ConvBN(3, cfg.stem_chs, 3, stride=2)
        self.stem.add_module("act", Hardswish())
        in_chs, stages, self.feature_info = cfg.stem_chs, [], []
        for i, rows in enumerate(cfg.stages):
            blocks = []
            for k, mid, out, se, act, stride in rows:
                gate = PaddleHardSigmoid if se else None
                blocks.append(mobilenetv3_block(in_chs, mid, out, k, stride, ACTIVATIONS[act], se_gate=gate))
                in_chs = out
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=in_chs, reduction=2 ** (i + 2), module=f"stages.{i}"))
        self.stages = nn.ModuleList(stages)
        self.transformers = nn.ModuleList(
            nn.Sequential(*(SeaBlock(dim, key_dim, cfg.num_heads, ratio, float(dp))
                            for dp in torch.linspace(0, drop_path_rate, depth, device="cpu")))
            for dim, key_dim, ratio, depth in zip(cfg.embed_dims, cfg.key_dims, cfg.mlp_ratios, cfg.depths)
        )
        self.first_transformer_stage = len(stages) - len(self.transformers)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)  # B×16×H/2×W/2
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x)  # B×C_i×H/2^(i+2)×W/2^(i+2)
            if i >= self.first_transformer_stage:
                x = self.transformers[i - self.first_transformer_stage](x)
            feats.append(x)
        return feats
