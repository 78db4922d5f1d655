"""A timm `features_only` encoder as a segkd backbone, and local ImageNet weights for it.

`TimmBackbone(name)` wraps `timm.create_model(name, features_only=True, pretrained=False)`: it returns NCHW maps
(Swin's NHWC outputs are permuted) and may add per-stage output norms that the papers put on top of the
classification backbone (FastSegFormer's `norm0/2/4/6`, the Swin teacher's final LayerNorm). `feature_info`
lists `num_chs` / `reduction` / `module` per returned stage, read from timm.

`load_pretrained(None)` takes timm's ImageNet weights through timm's own mechanism (the Hugging Face Hub and its
local cache; `HF_HOME`, `HF_HUB_OFFLINE`). `load_pretrained(path)` / `load_backbone_weights(backbone, path)` read a
local file instead. A file may use timm's layout (`stages.0.blocks.0...`, what `timm.create_model(pretrained=True)`
saves) or the original repository's (`network.0.0...`, the family's `original_key` rules, see
`segkd.models.layouts`); the one that names more of the file's keys wins. Classifier heads and buffers that timm
recomputes are skipped; a backbone weight the file lacks is an error naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from segkd.errors import WeightsError, first_line
from segkd.models.checkpoint import read_weights_file, unwrap_state_dict
from segkd.models.layouts import ORIGINAL_BUFFERS, fit_to_shape


class TimmBackbone(nn.Module):
    """timm `features_only` body + optional output norms; state-dict keys `body.*` and `out_norms.<i>.*`.

    Args:
        model_name: a timm model name, e.g. `poolformer_s12`.
        out_indices: which stages to return.
        out_norm: builds an output norm from a stage width (`lambda c: nn.GroupNorm(1, c)`); it acts on the
            body's own layout (NHWC for Swin).
        out_norms: stage index -> the norm's name in checkpoint files (`{3: "norm"}`); only these stages get one.
        original_key: timm key -> the original repository's key (the family's layout rules), if it has one.
        **timm_kwargs: passed to `timm.create_model` (`img_size`, `drop_path_rate`, ...).
    """

    def __init__(
        self,
        model_name: str,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        out_norm: Callable[[int], nn.Module] | None = None,
        out_norms: dict[int, str] | None = None,
        original_key: Callable[[str], str] | None = None,
        **timm_kwargs,
    ):
        super().__init__()
        self.model_name = model_name
        self.out_indices = tuple(out_indices)
        self.original_key = original_key
        self.timm_kwargs = timm_kwargs
        self.body = timm.create_model(
            model_name, pretrained=False, features_only=True, out_indices=tuple(out_indices), **timm_kwargs
        )
        self.feature_info: list[dict] = [
            dict(num_chs=d["num_chs"], reduction=d["reduction"], module=f"body.{d['module']}")
            for d in self.body.feature_info.get_dicts()
        ]
        self.channels: list[int] = [d["num_chs"] for d in self.feature_info]
        self.reductions: list[int] = [d["reduction"] for d in self.feature_info]
        self.channels_last = getattr(self.body, "output_fmt", "NCHW") == "NHWC"
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
        to_original = self.original_key
        if to_original is None:
            return {}
        body = [k[len("body."):] for k in self.state_dict() if k.startswith("body.")]
        body += [n for n, _ in self.body.named_buffers() if n.endswith(ORIGINAL_BUFFERS) and n not in body]
        return {f"body.{k}": to_original(k) for k in body} | self._out_norm_keys()

    def load_pretrained(self, path: str | None = None) -> str:
        """ImageNet weights into the body: timm's hub weights (`path=None`) or a local file; returns the source."""
        if path is not None:
            load_backbone_weights(self, path)
            return str(path)
        hub_id = timm.models.get_pretrained_cfg(self.model_name).hf_hub_id or self.model_name
        try:
            pretrained = timm.create_model(
                self.model_name, pretrained=True, features_only=True, out_indices=self.out_indices, **self.timm_kwargs
            )
        except Exception as e:  # noqa: BLE001  (offline with nothing cached, HTTP errors, a corrupt cache file)
            raise WeightsError(
                f"{self.model_name}: no ImageNet weights from the Hugging Face Hub '{hub_id}' "
                f"({first_line(e, 120)}); with no network, set model.backbone_weights=FILE to a local file"
            ) from None
        self.body.load_state_dict(pretrained.state_dict())
        return f"hf-hub:{hub_id}"

    def _out_norm_keys(self) -> dict[str, str]:
        return {
            f"out_norms.{i}.{p}": f"{name}.{p}"
            for i, name in self.out_norm_keys.items()
            for p in self.out_norms[i].state_dict()
        }


def load_backbone_weights(backbone: TimmBackbone, path: str | Path, state: dict | None = None) -> None:
    """Load a local ImageNet file (timm or original layout) into `backbone`; see the module docstring.
    `state`: the file's state dict, already read (and renamed) by the family."""
    state = unwrap_state_dict(read_weights_file(path), path) if state is None else state
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
