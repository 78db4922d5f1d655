"""Pictures of a prediction: fastseg's `colorize` / `blend` (public as `segkd.colorize`, `segkd.blend`) and
FastSegFormer's three mix types built on them.

| mix       | FastSegFormer mix_type | picture                                                             |
|-----------|------------------------|---------------------------------------------------------------------|
| `overlay` | 0                      | `blend(image, colorize(labels), α)`, α = 0.7 by default             |
| `mask`    | 1                      | the colour mask alone                                               |
| `cutout`  | 2                      | original pixels where pred ≠ 0 (not background), black elsewhere    |

`blend` mixes only where a class is drawn (a non-black colour): (1 − α)·image + α·colour there, the photo
untouched elsewhere, so a black background class or unknown labels do not darken the picture (fastseg's
`Image.blend` darkens everything; with its Cityscapes palette, which has no black class, the two agree).
Images are PIL images or H×W×3 uint8 RGB arrays; labels are H×W integer class indices.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segkd.data.palette import colorize as colorize_array
from segkd.data.palette import voc_palette

MIXES = ("overlay", "mask", "cutout")


def colour_mask(labels: np.ndarray, palette: list[list[int]] | None = None) -> np.ndarray:
    """H×W class indices -> H×W×3 uint8 colours; labels beyond the palette are black. None: the VOC palette."""
    return colorize_array(np.asarray(labels), palette or voc_palette(256), ignore_index=256)


def colorize(labels: np.ndarray, palette: list[list[int]] | None = None) -> Image.Image:
    """fastseg's `colorize`: H×W labels -> an RGB PIL image of class colours (None: the VOC palette)."""
    return Image.fromarray(colour_mask(labels, palette))


def blend_arrays(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(1 − alpha)·image + alpha·colours where a colour is drawn (non-black), the image elsewhere; PIL rounding."""
    mixed = image.astype(np.float32) * (1.0 - alpha) + colours.astype(np.float32) * alpha
    mixed = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    return np.where(colours.any(axis=-1, keepdims=True), mixed, image)


def blend(image: Image.Image | np.ndarray, colorized: Image.Image | np.ndarray, alpha: float = 0.5) -> Image.Image:
    """fastseg's `blend`: the photo with the class colours mixed in at `alpha` where a class is drawn."""
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    colours = np.asarray(colorized.convert("RGB") if isinstance(colorized, Image.Image) else colorized)
    if rgb.shape != colours.shape:
        raise ValueError(f"blend: image {rgb.shape[1]}×{rgb.shape[0]} and colours {colours.shape[1]}×"
                         f"{colours.shape[0]} differ in size")
    return Image.fromarray(blend_arrays(rgb, colours, alpha))


def cutout(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The original pixels where the prediction is not background (class 0), black elsewhere."""
    return np.where((labels != 0)[..., None], image, 0).astype(np.uint8)


def render(image: np.ndarray, labels: np.ndarray, palette: list[list[int]], mix: str = "overlay",
           alpha: float = 0.7) -> np.ndarray:
    """The picture for one mix type (see the module table)."""
    if mix == "overlay":
        return np.asarray(blend(image, colorize(labels, palette), alpha))
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
