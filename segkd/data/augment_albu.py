"""albumentations transforms behind segkd's op names: the general-purpose part of the op registry.

    {op: affine, scale: [0.9, 1.1], translate: 0.1, rotate: 45, shear: 10, p: 0.6}   # segkd's parameter names
    {op: gaussian_blur, blur_limit: [3, 7], p: 0.2}                                   # albumentations' own
    {op: albumentations, pipeline: {...}}                                             # an `A.to_dict` pipeline

The ops presets already used (`hflip`, `resize`, `affine`, `rgb_shift`, `brightness_contrast`) keep their
segkd parameters; every other op takes the keyword arguments of its albumentations class (see the
albumentations docs), less the ones segkd sets itself. Geometric ops move image and mask together with
constant borders: new image pixels take the grey `pad_value`, new mask pixels the ignore index (or 0 with
`mask_pad: background`), masks move with nearest interpolation. Photometric ops leave the mask alone.
`random_resized_crop` and `resize` default to the target size (network input online, the image's own size
offline).

Determinism: each call seeds the transform from the op's `rng` argument (`set_random_seed`), so a sample
depends on its seed alone, never on albumentations' global state or the worker that draws it.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations checks PyPI for updates on import otherwise

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from segkd.data.augment_ops import AugmentContext, ImageMask, probability, register_op, size_pair, span  # noqa: E402
from segkd.errors import first_line  # noqa: E402

MANAGED = ("border_mode", "fill", "fill_mask", "mask_interpolation")  # set by segkd on geometric ops
HIDDEN = ("strict", "seed", "always_apply")  # never a recipe parameter


class AlbumentationsOp:
    """One albumentations transform, built once per target size, seeded from `rng` on every call."""

    def __init__(self, ctx: AugmentContext, transform_cls: type, geometric: bool, size=None, **kwargs: Any):
        self.ctx, self.transform_cls, self.size = ctx, transform_cls, size_pair(size)
        accepted = inspect.signature(transform_cls).parameters
        fixed = dict(border_mode=cv2.BORDER_CONSTANT, fill=ctx.pad_value, fill_mask=ctx.mask_fill,
                     mask_interpolation=cv2.INTER_NEAREST) if geometric else {}
        self.kwargs = {k: v for k, v in fixed.items() if k in accepted} | kwargs
        self.sized = "size" in accepted or "height" in accepted
        self._built: dict[tuple[int, int] | None, Any] = {}
        self.transform(self.size or ctx.input_size or (64, 64))  # validates the parameters now

    def transform(self, hw: tuple[int, int]) -> Any:
        key = tuple(hw) if self.sized else None
        if key not in self._built:
            sized = ({"size": key} if "size" in inspect.signature(self.transform_cls).parameters
                     else {"height": key[0], "width": key[1]}) if self.sized else {}
            try:
                self._built[key] = self.transform_cls(**self.kwargs, **sized)
            except ValueError as e:  # albumentations re-raises pydantic's many-line ValidationError
                raise ValueError(_one_line(e)) from None
        return self._built[key]

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> ImageMask:
        t = self.transform(self.size or self.ctx.target(image))
        t.set_random_seed(int(rng.integers(2**32)))
        out = t(image=image, mask=mask)
        return out["image"], out["mask"]


def _one_line(e: ValueError) -> str:
    """`key: reason` from albumentations' parameter validation (its first error), else the first line."""
    cause = e.__cause__ if isinstance(e.__cause__, ValidationError) else e if isinstance(e, ValidationError) else None
    if cause is None:
        return first_line(e)
    err = cause.errors()[0]
    where = ".".join(str(x) for x in err["loc"] if not str(x).startswith(("tuple[", "float", "int")))
    return f"{where + ': ' if where else ''}{err['msg']} (got {err.get('input')!r})"


class GenericOp(AlbumentationsOp):
    """An albumentations transform under a segkd name, with the transform's own keyword arguments."""

    transform_cls: type
    geometric: bool

    def __init__(self, ctx: AugmentContext, **params: Any):
        size = params.pop("size", None)
        super().__init__(ctx, self.transform_cls, self.geometric, size=size, **params)

    @classmethod
    def parameters(cls) -> list[str]:
        hidden = HIDDEN + (MANAGED if cls.geometric else ()) + ("height", "width")
        return [p for p in inspect.signature(cls.transform_cls).parameters if p not in hidden]


GENERIC = {  # segkd name: (albumentations class, geometric)
    "hflip": (A.HorizontalFlip, True),
    "vflip": (A.VerticalFlip, True),
    "rotate": (A.Rotate, True),
    "random_resized_crop": (A.RandomResizedCrop, True),
    "elastic": (A.ElasticTransform, True),
    "grid_distortion": (A.GridDistortion, True),
    "perspective": (A.Perspective, True),
    "hue_saturation_value": (A.HueSaturationValue, False),
    "gamma": (A.RandomGamma, False),
    "clahe": (A.CLAHE, False),
    "gaussian_blur": (A.GaussianBlur, False),
    "motion_blur": (A.MotionBlur, False),
    "gaussian_noise": (A.GaussNoise, False),
    "jpeg": (A.ImageCompression, False),
    "coarse_dropout": (A.CoarseDropout, False),  # image holes only, unless fill_mask is given
}

for _name, (_cls, _geometric) in GENERIC.items():
    _op = type(f"{_cls.__name__}Op", (GenericOp,), {
        "transform_cls": _cls, "geometric": _geometric,
        "__doc__": f"albumentations.{_cls.__name__} ({'geometric' if _geometric else 'image only'}).",
    })
    globals()[_op.__name__] = register_op(_name)(_op)  # a module attribute, so that spawned workers unpickle it


@register_op("resize")
class Resize(AlbumentationsOp):
    """Stretch to `size` (default: the target size); image bilinear, mask nearest (albumentations Resize)."""

    def __init__(self, ctx: AugmentContext, size=None):
        super().__init__(ctx, A.Resize, True, size=size, interpolation=cv2.INTER_LINEAR)


@register_op("affine")
class Affine(AlbumentationsOp):
    """albumentations Affine: independent x/y scale and translate (fraction of the side), rotation (deg),
    x/y shear (deg), about the image centre; image bilinear, mask nearest; borders grey / mask fill."""

    def __init__(self, ctx: AugmentContext, scale=(0.9, 1.1), translate=0.1, rotate=45.0, shear=10.0, p=0.6):
        scale, translate = span("scale", scale), span("translate", translate, symmetric=True)
        shear = span("shear", shear, symmetric=True)
        super().__init__(ctx, A.Affine, True, scale={"x": scale, "y": scale},
                         translate_percent={"x": translate, "y": translate},
                         rotate=span("rotate", rotate, symmetric=True), shear={"x": shear, "y": shear},
                         interpolation=cv2.INTER_LINEAR, p=probability(p))


@register_op("rgb_shift")
class RGBShift(AlbumentationsOp):
    """albumentations RGBShift: with probability p add U(−shift, shift) to each channel, clipped."""

    def __init__(self, ctx: AugmentContext, shift=25.0, p: float = 0.5):
        shift = span("shift", shift, symmetric=True)
        super().__init__(ctx, A.RGBShift, False, r_shift_limit=shift, g_shift_limit=shift, b_shift_limit=shift,
                         p=probability(p))


@register_op("brightness_contrast")
class BrightnessContrast(AlbumentationsOp):
    """albumentations RandomBrightnessContrast: with probability p, x·α + β·255 with α = 1 + U(contrast),
    β = U(brightness) (limits ±0.2 by default), clipped."""

    def __init__(self, ctx: AugmentContext, brightness=0.2, contrast=0.2, p: float = 0.5):
        super().__init__(ctx, A.RandomBrightnessContrast, False, brightness_limit=span("brightness", brightness, True),
                         contrast_limit=span("contrast", contrast, True), p=probability(p))


@register_op("albumentations")
class SerializedPipeline:
    """A whole albumentations pipeline as saved by `A.to_dict` (or its YAML), seeded per call like every op.

    Its fills and interpolations are the pipeline's own: segkd's border rules apply to segkd's ops only.
    """

    def __init__(self, ctx: AugmentContext, pipeline: dict | None = None):
        if not isinstance(pipeline, dict) or "transform" not in pipeline:
            raise ValueError("pipeline= must be an albumentations serialised pipeline (A.to_dict), "
                             "a mapping with a 'transform' key")
        try:
            self.compose = A.from_dict(pipeline)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"pipeline: not a loadable albumentations pipeline ({first_line(e)})") from None

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> ImageMask:
        self.compose.set_random_seed(int(rng.integers(2**32)))
        out = self.compose(image=image, mask=mask)
        return out["image"], out["mask"]
