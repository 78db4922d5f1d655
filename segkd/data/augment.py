"""The online train-time pipeline: a preset's `augment:` op list -> one `TrainTransform`.

    augment:
      - {op: random_resized_paste, scale: [0.25, 2.0], aspect: [0.7, 1.3], pad_value: 128}
      - {op: hflip, p: 0.5}
      - {op: hsv_jitter, gains: [0.1, 0.7, 0.3]}

Ops come from the one registry that the offline `segkd augment` also builds from (`segkd.data.augment_ops`,
filled by segkd's own ops and by `segkd.data.augment_albu`); a misspelt op or parameter fails when the
transform is built, naming its position (`augment[1]: unknown op 'hfilp', did you mean 'hflip'?`).
The output is always exactly the network input size: if the ops leave another size, a final fit step
resizes per `data.resize` (letterbox on the grey canvas, or stretch), as evaluation does. Padded label pixels
take `data.ignore_index`, or 0 when `data.mask_pad: background`.
All randomness comes from the `rng` argument; the trainer seeds one per (seed, epoch, index) for exact resume.
"""

from __future__ import annotations

from typing import Any, Callable

import cv2
import numpy as np

from segkd.data.augment_ops import AugmentContext, ImageMask, paste_pair, resize_pair
from segkd.data.augment_pipeline import build_ops, list_ops  # noqa: F401  (list_ops: part of this API)
from segkd.data.transforms import Preprocess
from segkd.errors import DataError


def _get(data_cfg: Any, key: str) -> Any:
    return data_cfg[key] if isinstance(data_cfg, dict) else getattr(data_cfg, key)


def mask_fill(data_cfg: Any) -> int:
    """Label of padded pixels: 0 with `mask_pad: background`, else the ignore index."""
    return 0 if _get(data_cfg, "mask_pad") == "background" else int(_get(data_cfg, "ignore_index"))


class TrainTransform:
    """`transform(image, mask, rng) -> (image, mask)`: uint8 H×W×3 RGB + uint8 H×W in, input size out."""

    def __init__(self, ops: list[Callable[..., ImageMask]], names: list[str], ctx: AugmentContext, resize: str):
        self.ops, self.names, self.ctx = ops, names, ctx
        self.fit_geometry = Preprocess(ctx.input_size, resize, pad_value=ctx.pad_value)

    def __repr__(self) -> str:
        h, w = self.ctx.input_size
        return f"TrainTransform([{', '.join(self.names)}] -> {h}×{w})"

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> ImageMask:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f"augment: expected an H×W×3 uint8 image, got {image.dtype} {image.shape}")
        if mask.shape != image.shape[:2]:
            raise DataError(f"augment: mask {mask.shape} does not match image {image.shape[:2]}")
        for op in self.ops:
            image, mask = op(image, mask, rng)
        if image.shape[:2] != self.ctx.input_size:
            image, mask = self.fit(image, mask)
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)

    def fit(self, image: np.ndarray, mask: np.ndarray) -> ImageMask:
        """To the input size as evaluation does: letterbox (centred, padded) or stretch."""
        top, left, nh, nw = self.fit_geometry.geometry(image.shape[:2]).box
        image, mask = resize_pair(image, mask, (nh, nw), cv2.INTER_CUBIC)
        if (nh, nw) == self.ctx.input_size:
            return image, mask
        return paste_pair(image, mask, self.ctx.input_size, top, left, self.ctx.pad_value, self.ctx.mask_fill)


def build_train_transform(ops: list[dict], data_cfg: Any, input_size: int | tuple[int, int]) -> TrainTransform:
    """Validate and build every op of a preset's `augment:` list (a `DataConfig` or its dict form)."""
    hw = (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]), int(input_size[-1]))
    ctx = AugmentContext(hw, int(_get(data_cfg, "pad_value")), mask_fill(data_cfg))
    built, names = build_ops(ops, ctx)
    return TrainTransform(built, names, ctx, _get(data_cfg, "resize"))


def train_sample(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, transform: TrainTransform, data_cfg: Any
) -> tuple[np.ndarray, np.ndarray]:
    """One training pair: augmented, then normalised 3×H×W float32 image and H×W int64 label."""
    image, mask = transform(image, mask, rng)
    return Preprocess.from_config(data_cfg, size=transform.ctx.input_size).normalize(image), mask.astype(np.int64)
