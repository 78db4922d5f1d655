"""The one contract every segkd model follows, and the slots a family fills to get it.

A segmentation model is **encoder → decoder → head** (segmentation_models.pytorch's layout). A family subclasses
`SegmentationModel` and assigns three modules in `__init__`; the base class owns everything else and a family
never overrides `forward` or `forward_taps`.

Slots:
- `backbone` (the encoder): `backbone(x)` returns the stage maps `[B×C_i×H/s_i×W/s_i]`, shallow to deep, or an
  ordered dict of named maps whose `stage*` entries are those stages (in order) and whose other entries are
  extra encoder taps (SegFormer's `embed1..4`). `backbone.feature_info` describes the stages (timm's
  `FeatureInfo` or a list of `dict(num_chs=..., reduction=...)`); `encoder_channels` / `encoder_reductions`
  read it, and `size_divisor` is the largest reduction.
- `decoder` (neck + decoder): `decoder(feats)` or `decoder(feats, image)` (declare an `image` parameter to get
  the normalised input) returns the decoded map, or an ordered dict of named maps; the last one feeds the head.
  A bare tensor is tapped as `fusion`. `None` hands the deepest stage to the head.
- `head`: `head(x)` or `head(x, image)` returns the logits `B×K×h×w` at any resolution, or an ordered dict of
  named maps ending with `logits` (FastSegFormer's `detail`).

What the base class gives every model:
- `forward(x)`: logits `B×K×H×W` at the input size (bilinear, `upsample_align_corners`).
- `forward_taps(x)` -> `(logits, taps)`: taps are the encoder stages (`stage1`, `stage2`, ... unless the encoder
  names them), the decoder's named outputs, the head's, and `logits` at the head's own resolution. KD losses and
  presets address them by name; renaming a submodule never renames a tap.
- `predict_labels(x)` -> `B×H×W` int64 class indices, argmax of `forward` by default. It is the one label path of
  `segkd eval`, the torch predictor and `segkd export --argmax`; a family that computes labels another way
  (PP-MobileSeg's VIM) overrides this method alone, starting from `head_taps(x)` (the taps with `logits` at
  the head's resolution). An override that is sometimes the argmax (VIM below 30 classes) marks itself with
  `argmax_of_logits = predicate(model)`, so eval keeps its TTA and score resizing then.
- `predict(images)` / `predict_one(image)`: fastseg's Python API (see `segkd.models.inference`).
- `freeze_backbone()` / `unfreeze_backbone()`; `backbone_source` (set by the builder): where the backbone's
  pretrained weights came from (a hub id or a file), `None` when it starts from its own init. `backbone_loaded`
  says whether it is set.
- `check_input(x)`: the error says the fix (pad or resize to a multiple of `size_divisor`, or the fixed size).

Families are built by `segkd.models.builder.build_model_with_cfg` (signature-checked options, default cfg,
checkpoint filter, `pretrained` / `backbone_weights`).
"""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segkd.errors import ConfigError
from segkd.models import inference

Taps = "OrderedDict[str, Tensor]"


def feature_dicts(backbone: nn.Module) -> list[dict]:
    """`backbone.feature_info` as a list of dicts (timm `FeatureInfo` or a plain list); [] when absent."""
    info = getattr(backbone, "feature_info", None)
    if info is None:
        return []
    return list(info.get_dicts()) if hasattr(info, "get_dicts") else list(info)


@functools.cache
def takes_image(cls: type) -> bool:
    """Whether a slot module class's `forward` declares an `image` parameter (it then gets the model input)."""
    return "image" in inspect.signature(cls.forward).parameters


class SegmentationModel(nn.Module):
    """Base class: slots → taps, logits at input size, labels, input checks, backbone freezing."""

    #: a fixed (H, W) the network only runs at, or None when any multiple of `size_divisor` works
    fixed_input_size: tuple[int, int] | None = None
    #: resize mode used to bring the head's logits to the input size
    upsample_align_corners: bool = False
    #: why one exported graph cannot serve every input size (ONNX export then keeps H and W static), or None
    static_graph_reason: str | None = None
    #: where the builder loaded the backbone's pretrained weights from (hub id or file), None = own init
    backbone_source: str | None = None

    backbone: nn.Module
    decoder: nn.Module | None  # optional: families without one leave it unset
    head: nn.Module

    # -- slots --------------------------------------------------------------------------------------------
    @property
    def encoder_channels(self) -> list[int]:
        return [d["num_chs"] for d in feature_dicts(self.backbone)]

    @property
    def encoder_reductions(self) -> list[int]:
        return [d["reduction"] for d in feature_dicts(self.backbone)]

    @property
    def size_divisor(self) -> int:
        """Every input side must be a multiple of this: the encoder's largest reduction (1 when unknown)."""
        return max(self.encoder_reductions, default=1)

    @property
    def backbone_loaded(self) -> bool:
        return self.backbone_source is not None

    def forward_taps(self, x: Tensor) -> tuple[Tensor, Taps]:
        """(logits B×K×H×W at the input size, named taps); see the module docstring."""
        taps = self.head_taps(x)
        return self._to_input_size(taps["logits"], x), taps

    def head_taps(self, x: Tensor) -> Taps:
        """The named taps, `logits` at the head's own resolution (nothing resized to the input size)."""
        self.check_input(x)
        encoded = self.backbone(x)
        if isinstance(encoded, Tensor):
            encoded = [encoded]
        if isinstance(encoded, dict):
            taps = OrderedDict(encoded)
            feats = [v for k, v in encoded.items() if k.startswith("stage")]
        else:
            taps = OrderedDict((f"stage{i + 1}", f) for i, f in enumerate(encoded))  # B×C_i×H/s_i×W/s_i
            feats = list(encoded)
        decoder = getattr(self, "decoder", None)  # (nn.Module keeps submodules out of the class namespace)
        if decoder is None:
            decoded, last = OrderedDict(), feats[-1]
        else:
            out = self._run_slot(decoder, feats, x)
            decoded = out if isinstance(out, dict) else OrderedDict(fusion=out)
            last = next(reversed(decoded.values()))
        taps.update(decoded)
        logits = self._run_slot(self.head, last, x)
        taps.update(logits if isinstance(logits, dict) else OrderedDict(logits=logits))  # B×K×h×w
        return taps

    def _run_slot(self, module: nn.Module, inputs: Any, image: Tensor) -> Any:
        return module(inputs, image) if takes_image(type(module)) else module(inputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_taps(x)[0]

    def _to_input_size(self, logits: Tensor, x: Tensor) -> Tensor:
        if logits.shape[-2:] == x.shape[-2:]:
            return logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=self.upsample_align_corners)

    # -- labels and the fastseg-style Python API ----------------------------------------------------------
    def predict_labels(self, x: Tensor) -> Tensor:
        """B×3×H×W normalised batch -> B×H×W int64 class indices (argmax of the logits by default)."""
        return self(x).argmax(1)

    predict_labels.argmax_of_logits = True  # see `inference.labels_are_argmax`; an override drops the mark

    @torch.no_grad()
    def predict(self, images: Any) -> list[np.ndarray] | np.ndarray:
        """PIL images or H×W×3 uint8 RGB arrays (one, or a list of any sizes) -> H×W int64 labels at each
        image's own size; the model's own mean/std and input size (`default_cfg`) are applied."""
        return inference.predict(self, images)

    def predict_one(self, image: Any) -> np.ndarray:
        """One image -> its H×W int64 label array (`predict([image])[0]`)."""
        return inference.predict(self, [image])[0]

    # -- checks and training helpers ----------------------------------------------------------------------
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

