"""A timm `features_only` encoder as a segkd backbone, and local ImageNet weights for it.

`TimmBackbone(name)` wraps `timm.create_model(name, features_only=True, pretrained=False)`: it returns NCHW maps
(Swin's NHWC outputs are permuted) and may add per-stage output norms that the papers put on top of the
classification backbone (FastSegFormer's `norm0/2/4/6`, the Swin teacher's final LayerNorm).

`load_backbone_weights(backbone, path)` reads a local file, never the network. It accepts both timm's layout
(`stages.0.blocks.0...`, what `timm.create_model(pretrained=True)` saves) and the original repository's layout
(`network.0.0...`, see `segkd.models.layouts`), picking the one that names more of the file's keys. Classifier heads
and buffers that timm recomputes are skipped; a backbone weight the file lacks is an error naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from segkd.errors import WeightsError
from segkd.models.checkpoint import read_weights_file, unwrap_state_dict
from segkd.models.layouts import ORIGINAL_BUFFERS, ORIGINAL_KEY, fit_to_shape


class TimmBackbone(nn.Module):
    """timm `features_only` body + optional output norms; state-dict keys `body.*` and `out_norms.<i>.*`.

    Args:
        model_name: a timm model name, e.g. `poolformer_s12`.
        out_indices: which stages to return.
        out_norm: builds an output norm from a stage width (`lambda c: nn.GroupNorm(1, c)`); it acts on the
            body's own layout (NHWC for Swin).
        out_norms: stage index -> the norm's name in checkpoint files (`{3: "norm"}`); only these stages get one.
        **timm_kwargs: passed to `timm.create_model` (`img_size`, `drop_path_rate`, ...).
    """

    def __init__(
        self,
        model_name: str,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        out_norm: Callable[[int], nn.Module] | None = None,
        out_norms: dict[int, str] | None = None,
        **timm_kwargs,
    ):
        super().__init__()
        self.model_name = model_name
        self.timm_kwargs = timm_kwargs
        self.body = timm.create_model(
            model_name, pretrained=False, features_only=True, out_indices=tuple(out_indices), **timm_kwargs
        )
        self.channels: list[int] = self.body.feature_info.channels()
        self.reductions: list[int] = self.body.feature_info.reduction()
        self.channels_last = self.body.output_fmt == "NHWC"
        self.out_norm_keys = dict(out_norms or {})
        self.out_norms = nn.ModuleList(
            out_norm(c) if i in self.out_norm_keys else nn.Identity() for i, c in enumerate(self.channels)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for f, norm in zip(self.body(x), self.out_norms):
            f = norm(f)
            feats.append(f.permute(0, 3, 1, 2).contiguous() if self.channels_last else f)  # B×C_i×H/s_i×W/s_i
        return feats

    def timm_keys(self) -> dict[str, str]:
        """Own state-dict key -> key in a timm checkpoint of the full (classification) model."""
        with torch.device("meta"):
            full = timm.create_model(self.model_name, pretrained=False, **self.timm_kwargs)
        # features_only flattens the model's first-level Sequentials: `stages.0` becomes `stages_0`
        unflatten = {
            f"{name}_{child}": f"{name}.{child}"
            for name, module in full.named_children() if isinstance(module, nn.Sequential)
            for child, _ in module.named_children()
        }
        keys = {}
        for key in self.state_dict():
            if key.startswith("body."):
                top, _, rest = key[len("body."):].partition(".")
                keys[key] = f"{unflatten.get(top, top)}.{rest}"
        return keys | self._out_norm_keys()

    def original_keys(self) -> dict[str, str]:
        """Own key -> key in the original repository's layout, including the index buffers it saves.

        Empty when segkd does not know the original layout of this timm model.
        """
        to_original = ORIGINAL_KEY.get(self.model_name)
        if to_original is None:
            return {}
        body = [k[len("body."):] for k in self.state_dict() if k.startswith("body.")]
        body += [n for n, _ in self.body.named_buffers() if n.endswith(ORIGINAL_BUFFERS) and n not in body]
        return {f"body.{k}": to_original(k) for k in body} | self._out_norm_keys()

    def _out_norm_keys(self) -> dict[str, str]:
        return {
            f"out_norms.{i}.{p}": f"{name}.{p}"
            for i, name in self.out_norm_keys.items()
            for p in self.out_norms[i].state_dict()
        }


def load_backbone_weights(backbone: TimmBackbone, path: str | Path) -> None:
    """Load a local ImageNet file (timm or original layout) into `backbone`; see the module docstring."""
    state = unwrap_state_dict(read_weights_file(path), path)
    own = backbone.state_dict()
    layouts = [backbone.timm_keys(), backbone.original_keys()]
    names = max(layouts, key=lambda layout: len(state.keys() & set(layout.values())))
    lookup = {theirs: ours for ours, theirs in names.items() if ours in own}
    found = {lookup[k]: fit_to_shape(v, own[lookup[k]].shape, k, str(path)) for k, v in state.items() if k in lookup}
    if not found:
        first = next(iter(state), "")
        raise WeightsError(
            f"{path}: not a checkpoint of {backbone.model_name} (no backbone key found; first '{first}')"
        )
    missing = [k for k in own if k.startswith("body.") and k not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise WeightsError(f"{path}: no weights for {backbone.model_name} key '{names[missing[0]]}'{more}")
    backbone.load_state_dict(found, strict=False)
