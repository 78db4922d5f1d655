"""Class colours: the VOC palette (as FastSegFormer and most VOC-layout datasets use) and colourisation."""

from __future__ import annotations

import colorsys

import numpy as np


def voc_palette(n: int) -> list[list[int]]:
    """The first `n` colours of the PASCAL VOC palette (bit-interleaved), as [[r, g, b], ...]."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append([r, g, b])
    return colours


def hsv_palette(n: int) -> list[list[int]]:
    """`n` evenly spaced hues, background black: for more classes than VOC's 21 distinct colours."""
    return [[0, 0, 0]] + [
        [round(255 * v) for v in colorsys.hsv_to_rgb(i / max(n - 1, 1), 0.9, 0.95)] for i in range(n - 1)
    ]


def default_palette(n: int) -> list[list[int]]:
    return voc_palette(n) if n <= 21 else hsv_palette(n)


def colorize(mask: np.ndarray, palette: list[list[int]], ignore_index: int = 255) -> np.ndarray:
    """H×W class indices -> H×W×3 uint8 RGB; ignored and unknown labels are black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette)] = np.asarray(palette, np.uint8)
    if ignore_index < 256:
        lut[ignore_index] = 0
    return lut[mask.astype(np.uint8)]
