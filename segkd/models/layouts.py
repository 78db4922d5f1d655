"""Checkpoint key layouts: the generic remapping machinery behind every family's `checkpoint_filter_fn`.

The papers' released checkpoints and the original ImageNet files name weights as the original code does
(`network.0.0.mlp.fc1.weight`), timm and segkd name them their own way (`stages.0.blocks.0.mlp.fc1.weight`).
A family writes its layout as data, ordered `(regex, replacement)` rules, and these helpers apply them:
- `apply_rules(rules, key)`: key renames, nothing else (a backbone's original layout, see
  `TimmBackbone(original_key=...)`);
- `reference_keys` / `from_reference_checkpoint`: a whole model's keys, backbone under the family's prefix plus
  module-path rules for the rest;
- `remap_state_dict`: a strict rename of a foreign state dict; `fit_to_shape`: the one reshape allowed
  (singleton dims, e.g. EfficientFormerV2 layer scales C×1×1 vs C).
The rules themselves live in the family files.
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


def apply_rules(rules: list[Rule], key: str) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


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


def reference_keys(model: nn.Module, rules: list[ModuleRule], family: str, backbone_prefix: str) -> dict[str, str]:
    """segkd key -> the original repository's key for a model whose backbone is a `TimmBackbone`.

    Backbone keys come from the backbone's own original layout under `backbone_prefix`; every other module path
    is renamed by the first `rules` pattern that matches it in full (the leaf name, `weight`/`bias`/..., is kept).
    """
    keys = {f"backbone.{k}": f"{backbone_prefix}{v}" for k, v in model.backbone.original_keys().items()}
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


def from_reference_checkpoint(state: dict[str, Tensor], model: nn.Module, rules: list[ModuleRule], family: str,
                              backbone_prefix: str) -> dict[str, Tensor]:
    """A state dict of the original repository (backbone keys under `backbone_prefix`) mapped onto segkd's keys
    with `reference_keys`; any other layout passes through unchanged (for `load_weights` to try as segkd's own)."""
    if not any(k.startswith(backbone_prefix) for k in state):
        return state
    keys = reference_keys(model, rules, family, backbone_prefix)
    return remap_state_dict(state, keys, model, f"reference {family} checkpoint")
