"""Pictures of a prediction: FastSegFormer's three mix types and fastseg's colorize/blend.

| mix       | FastSegFormer mix_type | picture                                                        |
|-----------|------------------------|----------------------------------------------------------------|
| `overlay` | 0                      | (1 − α)·image + α·colour mask, α = 0.7 (`Image.blend(img, mask, 0.7)`) |
| `mask`    | 1                      | the colour mask alone                                          |
| `cutout`  | 2                      | original pixels where pred ≠ 0 (not background), black elsewhere |

fastseg: `colorize(mask)` is `colour_mask` and `blend(image, seg)` is `blend(image, seg, 0.4)`
(0.6·image + 0.4·colours). All arrays are H×W×3 uint8 RGB; labels are H×W integer class indices.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segkd.data.palette import colorize

MIXES = ("overlay", "mask", "cutout")
FASTSEG_ALPHA = 0.4


def colour_mask(labels: np.ndarray, palette: list[list[int]]) -> np.ndarray:
    """H×W class indices -> H×W×3 colours (fastseg `colorize`); labels beyond the palette are black."""
    return colorize(labels, palette, ignore_index=256)


def blend(image: np.ndarray, colours: np.ndarray, alpha: float = FASTSEG_ALPHA) -> np.ndarray:
    """(1 − alpha)·image + alpha·colours, rounded like PIL's `Image.blend`."""
    mixed = image.astype(np.float32) * (1.0 - alpha) + colours.astype(np.float32) * alpha
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def cutout(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The original pixels where the prediction is not background (class 0), black elsewhere."""
    return np.where((labels != 0)[..., None], image, 0).astype(np.uint8)


def render(image: np.ndarray, labels: np.ndarray, palette: list[list[int]], mix: str = "overlay",
           alpha: float = 0.7) -> np.ndarray:
    """The picture for one mix type (see the module table)."""
    if mix == "overlay":
        return blend(image, colour_mask(labels, palette), alpha)
    if mix == "mask":
        return colour_mask(labels, palette)
    if mix == "cutout":
        return cutout(image, labels)
    raise ValueError(f"unknown mix '{mix}' (choose from {', '.join(MIXES)})")


def save_labels(path: str | Path, labels: np.ndarray, palette: list[list[int]]) -> None:
    """Class indices as an 8-bit palette ('P') PNG whose colour table is the class palette.

    More than 256 classes do not fit a palette PNG: those are written as 16-bit greyscale indices.
    """
    if labels.size and int(labels.max()) > 255:
        cv2.imwrite(str(path), labels.astype(np.uint16))
        return
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [int(v) for rgb in palette[:256] for v in rgb]
    im.putpalette(flat + [0] * (768 - len(flat)))
    im.save(path)


def save_rgb(path: str | Path, image: np.ndarray) -> None:
    """An H×W×3 RGB picture to PNG/JPEG (by extension)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the image")


def draw_fps(frame: np.ndarray, fps: float) -> np.ndarray:
    """Write `fps= 12.34` in the top-left corner of an RGB frame (FastSegFormer's video demo)."""
    scale = max(0.4, frame.shape[0] / 720)
    return cv2.putText(frame.copy(), f"fps= {fps:.2f}", (8, int(24 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX,
                       scale, (0, 255, 0), max(1, int(2 * scale)))
