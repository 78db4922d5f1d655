"""Inference geometry shared by eval, predict, export and bench: image -> network input, logits -> original size.

Two modes (a preset's `data.resize`):
- `letterbox` (FastSegFormer): keep the aspect ratio, centre on a grey canvas; outputs are cropped to the
  un-padded region and resized back.
- `resize`: stretch to the input size; outputs are resized back.
Normalisation is `(x / 255 - mean) / std` per RGB channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Geometry:
    """Where the original image sits inside the network input."""

    orig_hw: tuple[int, int]  # original H, W
    box: tuple[int, int, int, int]  # top, left, height, width of the image inside the input


@dataclass(frozen=True)
class Preprocess:
    size: tuple[int, int]  # network input H, W
    mode: str = "resize"  # letterbox | resize
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    pad_value: int = 128

    @classmethod
    def from_config(cls, data_cfg, size: tuple[int, int] | None = None) -> "Preprocess":
        """From a `DataConfig` (or its dict form); `size` overrides its input size."""
        get = data_cfg.get if isinstance(data_cfg, dict) else lambda k: getattr(data_cfg, k)
        input_size = get("input_size")
        hw = size or ((input_size, input_size) if isinstance(input_size, int) else tuple(input_size[:2]))
        return cls(tuple(hw), get("resize"), tuple(get("mean")), tuple(get("std")), get("pad_value"))

    def geometry(self, orig_hw: tuple[int, int]) -> Geometry:
        (h, w), (th, tw) = orig_hw, self.size
        if self.mode != "letterbox":
            return Geometry(orig_hw, (0, 0, th, tw))
        scale = min(tw / w, th / h)
        nh, nw = max(1, int(h * scale)), max(1, int(w * scale))
        return Geometry(orig_hw, ((th - nh) // 2, (tw - nw) // 2, nh, nw))

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """H×W×3 uint8 RGB -> (3×h×w float32 network input, Geometry)."""
        geom = self.geometry(image.shape[:2])
        top, left, nh, nw = geom.box
        resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_CUBIC)
        if self.mode == "letterbox":
            canvas = np.full((*self.size, 3), self.pad_value, np.uint8)
            canvas[top : top + nh, left : left + nw] = resized
            resized = canvas
        return self.normalize(resized), geom

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """H×W×3 uint8 RGB -> 3×H×W float32."""
        x = image.astype(np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))


def restore(scores: Tensor, geom: Geometry) -> Tensor:
    """B×K×h×w scores at the network input -> B×K×H0×W0 at the original size (crop padding, bilinear)."""
    top, left, nh, nw = geom.box
    scores = scores[..., top : top + nh, left : left + nw]  # drop the letterbox padding
    return F.interpolate(scores, size=geom.orig_hw, mode="bilinear", align_corners=False)


def restore_labels(labels: np.ndarray, geom: Geometry) -> np.ndarray:
    """h×w labels at the network input -> H0×W0 (crop the letterbox padding, nearest-neighbour resize)."""
    top, left, nh, nw = geom.box
    crop = np.ascontiguousarray(labels[top : top + nh, left : left + nw]).astype(np.int32)
    h0, w0 = geom.orig_hw
    return cv2.resize(crop, (w0, h0), interpolation=cv2.INTER_NEAREST)


def to_batch(arrays: list[np.ndarray]) -> Tensor:
    """A list of 3×H×W float32 arrays -> B×3×H×W tensor."""
    return torch.from_numpy(np.stack(arrays))
