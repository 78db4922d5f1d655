"""Checkpoint key layouts: the original repositories behind segkd's timm backbones, and remapping helpers.

The papers' released checkpoints and the original ImageNet files name their backbone weights as the original
code does (`network.0.0.mlp.fc1.weight`), timm names them its own way (`stages.0.blocks.0.mlp.fc1.weight`).
`ORIGINAL_KEY[timm_name](key)` turns a key of timm's `features_only` model into the original repository's key:
renames and nothing else. Shapes differ in one place (EfficientFormerV2 layer scales are C×1×1 there, C here),
which `fit_to_shape` reshapes.

- PoolFormer (sail-sg/poolformer): `patch_embed.proj`, `network.{0,2,4,6}.B.*` stages, `network.{1,3,5}.proj`
  downsamples, `layer_scale_1/2`.
- EfficientFormerV2 (snap-research/EfficientFormer): `patch_embed.{0,1,3,4}` stem, `network.{1,3}.{proj,norm}`
  and `network.5.{conv,bn,attn}` downsamples, plain `nn.Sequential` indices inside conv+BN pairs.
- Swin (microsoft/Swin-Transformer): PatchMerging sits at the end of a stage (`layers.{0,1,2}.downsample`),
  timm puts it at the start of the next one.
"""

from __future__ import annotations

import re
from typing import Callable

import torch
from torch import Tensor, nn

from segkd.errors import WeightsError

#: index buffers the original code saves in its state dicts; timm recomputes them (non-persistent), so they are
#: listed for the original layout and skipped when loading
ORIGINAL_BUFFERS = ("attention_bias_idxs", "relative_position_index")

Rule = tuple[str, "str | Callable[[re.Match], str]"]


def _apply(rules: list[Rule], key: str) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def _stage(m: re.Match) -> str:
    """`stages_i.blocks.` -> `network.{2i}.`: stages sit at even indices, downsamples at odd ones."""
    return f"network.{2 * int(m[1])}."


_POOLFORMER: list[Rule] = [
    (r"^stem\.conv\.", "patch_embed.proj."),
    (r"^stages_(\d)\.downsample\.conv\.", lambda m: f"network.{2 * int(m[1]) - 1}.proj."),
    (r"^stages_(\d)\.blocks\.", _stage),
    (r"\.layer_scale(\d)\.scale$", r".layer_scale_\1"),
]

_EFFICIENTFORMERV2: list[Rule] = [
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

_SWIN: list[Rule] = [
    (r"^layers_(\d)\.downsample\.", lambda m: f"layers.{int(m[1]) - 1}.downsample."),
    (r"^layers_(\d)\.", r"layers.\1."),
]

#: timm model name -> (timm features_only key -> original repository key)
ORIGINAL_KEY: dict[str, Callable[[str], str]] = {
    "poolformer_s12": lambda key: _apply(_POOLFORMER, key),
    "efficientformerv2_s0": lambda key: _apply(_EFFICIENTFORMERV2, key),
    "swin_tiny_patch4_window7_224": lambda key: _apply(_SWIN, key),
}


def fit_to_shape(value: Tensor, shape: torch.Size, key: str, source: str) -> Tensor:
    """`value` reshaped to `shape` when they differ only by singleton dims (C×1×1 vs C); else a WeightsError."""
    if value.shape == shape:
        return value
    if [d for d in value.shape if d != 1] == [d for d in shape if d != 1]:
        return value.reshape(shape)
    raise WeightsError(f"{source}: '{key}' has shape {tuple(value.shape)}, the model expects {tuple(shape)}")


def remap_state_dict(state: dict[str, Tensor], key_map: dict[str, str], model: nn.Module, source: str) -> dict:
    """A foreign state dict renamed to `model`'s keys with `key_map` (own key -> foreign key), strictly.

    Foreign keys that map to buffers the model does not save (index tables) are dropped. A foreign key without
    a counterpart, or a model key the foreign dict lacks, is a WeightsError naming the foreign key.
    """
    own = model.state_dict()
    lookup = {theirs: ours for ours, theirs in key_map.items()}
    out = {}
    for key, value in state.items():
        ours = lookup.get(key)
        if ours is None:
            raise WeightsError(f"{source}: key '{key}' has no counterpart in {type(model).__name__}")
        if ours in own:
            out[ours] = fit_to_shape(value, own[ours].shape, key, source)
    missing = [key_map[k] for k in own if k not in out]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise WeightsError(f"{source}: missing key '{missing[0]}'{more}")
    return out


ModuleRule = tuple[str, Callable[[re.Match], str]]


def reference_keys(model: nn.Module, rules: list[ModuleRule], family: str) -> dict[str, str]:
    """segkd key -> the original repository's key for a model whose backbone is a `TimmBackbone`.

    Backbone keys come from the backbone's own original layout; every other module path is renamed by the first
    `rules` pattern that matches it in full (the leaf name, `weight`/`bias`/..., is kept).
    """
    keys = {f"backbone.{k}": f"common_backbone.{v}" for k, v in model.backbone.original_keys().items()}
    for key in model.state_dict():
        if key.startswith("backbone."):
            continue
        path, _, leaf = key.rpartition(".")
        for pattern, repl in rules:
            m = re.fullmatch(pattern, path)
            if m:
                keys[key] = f"{repl(m)}.{leaf}"
                break
        else:
            raise LookupError(f"no reference name for {family} module '{path}'")
    return keys


def from_reference_checkpoint(state: dict[str, Tensor], model: nn.Module, rules: list[ModuleRule], family: str
                              ) -> dict[str, Tensor]:
    """A state dict of the original repository (keys under `common_backbone.`) mapped onto segkd's keys with
    `reference_keys`; any other layout passes through unchanged (for `load_weights` to try as segkd's own)."""
    if not any(k.startswith("common_backbone.") for k in state):
        return state
    return remap_state_dict(state, reference_keys(model, rules, family), model, f"reference {family} checkpoint")
