"""The augmentation op registry, and segkd's own ops: each op is `op(image, mask, rng) -> (image, mask)`.

One registry serves the online train-time pipeline (`segkd.data.augment`) and the offline `segkd augment`
command: a preset's `augment:` list and a recipe file are the same YAML op lists. Ops are registered by the
name presets use (`{op: hflip, p: 0.5}`); their constructor keywords are the YAML parameters, and `ctx`
carries the target size and the fill values.

Images are H×W×3 uint8 RGB, masks H×W uint8 class indices; masks always move with nearest interpolation so
labels never blend. All randomness comes from the `rng` argument (a `numpy.random.Generator`), so a sample is
reproducible from its seed alone.

Most ops are albumentations transforms behind segkd's names (`segkd.data.augment_albu`). The ops below are
written here because they reproduce a reference pipeline exactly and albumentations has no equivalent:
FastSegFormer's `get_random_data` paste and its OpenCV HSV jitter, PaddleSeg's ResizeStepScaling,
RandomPaddingCrop and its PIL-enhancer RandomDistort.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

ImageMask = tuple[np.ndarray, np.ndarray]  # (H×W×3 uint8 image, H×W uint8 mask)


@dataclass(frozen=True)
class AugmentContext:
    """What ops need to know about the dataset."""

    input_size: tuple[int, int] | None  # network input H, W; None offline: each image keeps its own size
    pad_value: int  # image canvas grey level
    mask_fill: int  # label of padded pixels: ignore_index or 0 (data.mask_pad)

    def target(self, image: np.ndarray) -> tuple[int, int]:
        """The size ops aim for: the network input online, the image's own (H, W) offline."""
        return self.input_size or image.shape[:2]


OPS: dict[str, type] = {}


def register_op(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        OPS[name] = cls
        return cls

    return deco


def op_parameters(cls: type) -> list[str]:
    """The YAML parameters of an op: its constructor keywords (or its own `parameters()`), `ctx` aside."""
    if hasattr(cls, "parameters"):
        return cls.parameters()
    return [p for p in inspect.signature(cls).parameters if p != "ctx"]


# ---------------------------------------------------------------- parameter checks (ValueError names the value)


def span(name: str, value, symmetric: bool = False) -> tuple[float, float]:
    """[low, high] with low <= high; a number x means [-x, x] where `symmetric`."""
    if symmetric and isinstance(value, (int, float)) and not isinstance(value, bool):
        return -abs(float(value)), abs(float(value))
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and value[0] <= value[1]
    ):
        return float(value[0]), float(value[1])
    raise ValueError(f"{name}={value!r} is not [low, high]" + (" or a number" if symmetric else ""))


def non_negative(name: str, value) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise ValueError(f"{name}={value!r} is not a number >= 0")


def probability(value) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise ValueError(f"p={value!r} is not a probability in [0, 1]")


def size_pair(value) -> tuple[int, int] | None:
    """[H, W] from a side or a pair; None stays None (the target size, chosen per image)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"size={value!r} is not a positive side or [H, W]")


# ---------------------------------------------------------------- shared pixel helpers


def resize_pair(image: np.ndarray, mask: np.ndarray, hw: tuple[int, int], interp: int) -> ImageMask:
    """Image with `interp`, mask with nearest, both to (H, W)."""
    size = (max(1, hw[1]), max(1, hw[0]))
    return cv2.resize(image, size, interpolation=interp), cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)


def paste(canvas: np.ndarray, src: np.ndarray, top: int, left: int) -> np.ndarray:
    """Put `src` on `canvas` with its corner at (top, left), which may be negative or run off (cropping)."""
    ch, cw = canvas.shape[:2]
    sh, sw = src.shape[:2]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + sh, ch), min(left + sw, cw)
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = src[y0 - top : y1 - top, x0 - left : x1 - left]
    return canvas


def paste_pair(image: np.ndarray, mask: np.ndarray, hw: tuple[int, int], top: int, left: int,
               pad_value: int, mask_fill: int) -> ImageMask:
    """Image and mask pasted at (top, left) on (H, W) canvases of `pad_value` grey and `mask_fill` label."""
    img_canvas = np.full((*hw, 3), pad_value, np.uint8)
    mask_canvas = np.full(hw, mask_fill, np.uint8)
    return paste(img_canvas, image, top, left), paste(mask_canvas, mask, top, left)


def apply_lut(image: np.ndarray, values: np.ndarray) -> np.ndarray:
    """uint8 image through a float look-up table (256 values, or 256×3 per channel), clipped to 0..255."""
    lut = np.clip(values, 0, 255).astype(np.uint8)
    if lut.ndim == 1:
        return cv2.LUT(image, lut)
    return np.stack([cv2.LUT(image[..., c], lut[:, c]) for c in range(3)], axis=-1)


LEVELS = np.arange(256, dtype=np.float64)


# ---------------------------------------------------------------- geometric ops


@register_op("random_resized_paste")
class RandomResizedPaste:
    """FastSegFormer's `get_random_data`: aspect jitter U/U, scale the input size, paste at a random offset.

    new_ar = iw/ih · U(aspect)/U(aspect), s = U(scale); if new_ar < 1: nh = int(s·H), nw = int(nh·new_ar),
    else nw = int(s·W), nh = int(nw/new_ar). Image bicubic, mask nearest. dx = int(U(0, W − nw)),
    dy = int(U(0, H − nh)) (negative when larger, which crops) on a grey canvas at the target size.
    """

    def __init__(self, ctx: AugmentContext, scale=(0.25, 2.0), aspect=(0.7, 1.3), pad_value: int | None = None):
        self.ctx, self.scale, self.aspect = ctx, span("scale", scale), span("aspect", aspect)
        self.pad_value = ctx.pad_value if pad_value is None else int(pad_value)

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> ImageMask:
        (h, w), (ih, iw) = self.ctx.target(image), image.shape[:2]
        new_ar = iw / ih * rng.uniform(*self.aspect) / rng.uniform(*self.aspect)
        s = rng.uniform(*self.scale)
        if new_ar < 1:
            nh = int(s * h)
            nw = int(nh * new_ar)
        else:
            nw = int(s * w)
            nh = int(nw / new_ar)
        nh, nw = max(nh, 1), max(nw, 1)
        image, mask = resize_pair(image, mask, (nh, nw), cv2.INTER_CUBIC)
        dx, dy = int(rng.random() * (w - nw)), int(rng.random() * (h - nh))  # U(0, W − nw), either sign
        return paste_pair(image, mask, (h, w), dy, dx, self.pad_value, self.ctx.mask_fill)


@register_op("random_scale")
class RandomScale:
    """PaddleSeg ResizeStepScaling: s uniform from {low, low + step, ..., high} (continuous when step = 0);
    new side = round(s · side); image bilinear, mask nearest."""

    def __init__(self, ctx: AugmentContext, range=(0.5, 2.0), step: float = 0.25):  # noqa: A002 (YAML name)
        self.low, self.high = span("range", range)
        if not isinstance(step, (int, float)) or step < 0 or self.low <= 0:
            raise ValueError(f"range={range!r}, step={step!r}: need 0 < low and step >= 0")
        self.step = float(step)

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> ImageMask:
        if self.step > 0 and self.high > self.low:
            factors = np.linspace(self.low, self.high, int((self.high - self.low) / self.step + 1))
            s = factors[rng.integers(len(factors))]
        else:
            s = rng.uniform(self.low, self.high)
        h, w = image.shape[:2]
        return resize_pair(image, mask, (int(round(s * h)), int(round(s * w))), cv2.INTER_LINEAR)


@register_op("random_crop")
class RandomCrop:
    """PaddleSeg RandomPaddingCrop: pad bottom/right to `size` if smaller (grey / mask fill), then crop a
    random `size` window (default: the target size)."""

    def __init__(self, ctx: AugmentContext, size=None):
        self.ctx, self.size = ctx, size_pair(size)

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> ImageMask:
        (ch, cw), (h, w) = self.size or self.ctx.target(image), image.shape[:2]
        top, left = int(rng.integers(max(h - ch, 0) + 1)), int(rng.integers(max(w - cw, 0) + 1))
        return paste_pair(image, mask, (ch, cw), -top, -left, self.ctx.pad_value, self.ctx.mask_fill)


# ---------------------------------------------------------------- photometric ops (mask untouched)


@register_op("hsv_jitter")
class HSVJitter:
    """FastSegFormer's HSV jitter: r = (3 draws of U(−1, 1)) · gains + 1 on OpenCV uint8 HSV through LUTs:
    hue (x·r0) mod 180, saturation clip(x·r1), value clip(x·r2)."""

    def __init__(self, ctx: AugmentContext, gains=(0.1, 0.7, 0.3)):
        if not (isinstance(gains, (list, tuple)) and len(gains) == 3 and all(g >= 0 for g in gains)):
            raise ValueError(f"gains={gains!r} is not three non-negative numbers (hue, saturation, value)")
        self.gains = np.asarray(gains, np.float64)

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> ImageMask:
        r = rng.uniform(-1, 1, 3) * self.gains + 1
        hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
        hsv = cv2.merge((
            cv2.LUT(hue, ((LEVELS * r[0]) % 180).astype(np.uint8)),
            apply_lut(sat, LEVELS * r[1]),
            apply_lut(val, LEVELS * r[2]),
        ))
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), mask


@register_op("color_distort")
class ColorDistort:
    """PaddleSeg RandomDistort: brightness, contrast, saturation and hue in random order, each with
    probability p. Factors f = U(1 − range, 1 + range) with PIL's enhancer formulas:
    brightness x·f; contrast m + f·(x − m), m = rounded mean grey level; saturation g + f·(x − g), g = grey
    of the pixel; hue: + U(−hue, hue) on the 0..255 hue circle. (Sharpness is off in PaddleSeg's defaults.)"""

    def __init__(self, ctx: AugmentContext, brightness=0.4, contrast=0.4, saturation=0.4, hue=18.0, p=0.5):
        self.ranges = [non_negative(n, v) for n, v in
                       (("brightness", brightness), ("contrast", contrast), ("saturation", saturation))]
        self.hue, self.p = non_negative("hue", hue), probability(p)
        self.ops = (self._brightness, self._contrast, self._saturation, self._hue)

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> ImageMask:
        for i in rng.permutation(len(self.ops)):
            if rng.random() < self.p:
                image = self.ops[i](image, rng)
        return image, mask

    def _factor(self, i: int, rng: np.random.Generator) -> float:
        return rng.uniform(1 - self.ranges[i], 1 + self.ranges[i])

    def _brightness(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return apply_lut(image, LEVELS * self._factor(0, rng))

    def _contrast(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mean = int(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).mean() + 0.5)
        return apply_lut(image, mean + self._factor(1, rng) * (LEVELS - mean))

    def _saturation(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None]
        out = grey + self._factor(2, rng) * (image.astype(np.float32) - grey)
        return np.clip(out, 0, 255).astype(np.uint8)

    def _hue(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        delta = rng.uniform(-self.hue, self.hue)
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)
        hsv[..., 0] = cv2.LUT(hsv[..., 0], np.floor((LEVELS + delta) % 256).astype(np.uint8))
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
