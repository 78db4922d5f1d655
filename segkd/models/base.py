"""The one contract every segkd model follows.

- `forward(x)` returns logits `B×K×H×W` at the input size.
- `forward_taps(x)` returns `(logits, taps)`: the same logits plus an ordered dict of named intermediate
  tensors (`stage1`..`stage4`, `fusion`, `logits`, family names listed in each family's docstring) that KD
  losses consume by name. `taps["logits"]` is the head output at its own resolution.
- `backbone` is the encoder module; `freeze_backbone()` / `unfreeze_backbone()` toggle its gradients.

A family subclasses `SegmentationModel`, wires its parts in `__init__` and implements `_taps(x)`; it never
overrides `forward`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segkd.errors import ConfigError


class SegmentationModel(nn.Module):
    """Base class: input checks, logits at input size, taps, backbone freezing."""

    #: every input side must be a multiple of this (the network's total stride)
    size_divisor: int = 32
    #: a fixed (H, W) the network only runs at, or None when any multiple of `size_divisor` works
    fixed_input_size: tuple[int, int] | None = None
    #: resize mode used to bring the head's logits to the input size
    upsample_align_corners: bool = False

    backbone: nn.Module

    def _taps(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        """Named intermediate tensors; must include `logits` (B×K×h×w, any resolution)."""
        raise NotImplementedError

    def check_input(self, x: Tensor) -> None:
        """Fail with a message that says the fix, not a shape crash deep inside the network."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ConfigError(f"{type(self).__name__} expects a B×3×H×W image batch, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if self.fixed_input_size is not None and (h, w) != tuple(self.fixed_input_size):
            fh, fw = self.fixed_input_size
            raise ConfigError(
                f"{type(self).__name__} only runs at {fh}×{fw} (its backbone is fixed-size), got {h}×{w}: "
                f"set data.input_size={fh}"
            )
        d = self.size_divisor
        if h % d or w % d:
            raise ConfigError(
                f"{type(self).__name__} needs input sides that are multiples of {d}, got {h}×{w}: "
                f"resize or pad to {-(-h // d) * d}×{-(-w // d) * d}"
            )

    def forward_taps(self, x: Tensor) -> tuple[Tensor, "OrderedDict[str, Tensor]"]:
        self.check_input(x)
        taps = self._taps(x)
        return self._to_input_size(taps["logits"], x), taps

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_taps(x)[0]

    def _to_input_size(self, logits: Tensor, x: Tensor) -> Tensor:
        if logits.shape[-2:] == x.shape[-2:]:
            return logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=self.upsample_align_corners)

    def freeze_backbone(self) -> None:
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def unfreeze_backbone(self) -> None:
        for p in self.backbone.parameters():
            p.requires_grad_(True)

    @torch.no_grad()
    def tap_shapes(self, input_size: tuple[int, int] = (224, 224)) -> "OrderedDict[str, tuple[int, ...]]":
        """Name -> shape of every tap for one dummy image (used by `segkd presets show --taps`)."""
        was_training = self.training
        self.eval()
        _, taps = self.forward_taps(torch.zeros(1, 3, *input_size))
        self.train(was_training)
        return OrderedDict((k, tuple(v.shape)) for k, v in taps.items())
