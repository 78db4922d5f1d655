"""fastseg's Python API on every segkd model: `model.predict(images)` / `model.predict_one(image)`.

Images are PIL images or H×W×3 uint8 RGB arrays, one or a list, of any sizes. Each is scaled to 0..1,
normalised with the model's `default_cfg` mean/std, resized (bilinear) to the cfg's input size (or, without
one, to its own size rounded up to the model's `size_divisor`), run in eval mode without gradients, and its
labels (`predict_labels`; for the default argmax the logits are first resized back, bilinear) are returned at
the image's original size as an H×W int64 array. Unlike fastseg, images need not share a size and `.eval()`
need not be called first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from segkd.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def as_rgb_array(image: Any) -> np.ndarray:
    """A PIL image (any mode) or an H×W×3 uint8 array -> H×W×3 uint8 RGB array."""
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"))  # a writable copy (torch.from_numpy wants one)
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ConfigError(f"predict expects PIL images or H×W×3 uint8 RGB arrays, got {array.dtype} "
                          f"array of shape {array.shape}")
    return array


def network_size(model: nn.Module, hw: tuple[int, int]) -> tuple[int, int]:
    """The (H, W) an image of size `hw` runs at: the fixed size, the cfg input size, or `hw` rounded up."""
    if getattr(model, "fixed_input_size", None) is not None:
        return tuple(model.fixed_input_size)
    size = getattr(model, "default_cfg", {}).get("input_size")
    if size is not None:
        return tuple(size[-2:])
    d = getattr(model, "size_divisor", 1)
    return tuple(-(-s // d) * d for s in hw)


def to_input(model: nn.Module, image: np.ndarray, size: tuple[int, int], device: torch.device) -> Tensor:
    """H×W×3 uint8 -> 1×3×h×w normalised float tensor at `size`."""
    cfg = getattr(model, "default_cfg", {})
    mean = torch.tensor(cfg.get("mean", IMAGENET_MEAN), device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", IMAGENET_STD), device=device).view(1, 3, 1, 1)
    x = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float() / 255.0  # 1×3×H×W in 0..1
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return (x - mean) / std


def labels_are_argmax(model: nn.Module) -> bool:
    """Whether `model.predict_labels` is the argmax of its logits (the base class's, which carries the
    `argmax_of_logits` mark). Eval and predict then resize the scores before the argmax, as they always did;
    a model that computes labels another way has its labels taken as they are (nearest-neighbour resized).
    The mark may be a predicate of the model (PP-MobileSeg: argmax unless VIM is active)."""
    own = getattr(type(model), "predict_labels", None)
    mark = getattr(own, "argmax_of_logits", own is None)  # a bare module without one: argmax
    return bool(mark(model) if callable(mark) else mark)


def labels_at(model: nn.Module, x: Tensor, hw: tuple[int, int]) -> Tensor:
    """B×3×h×w -> B×H×W labels at the original size `hw`."""
    if not labels_are_argmax(model):
        labels = model.predict_labels(x)  # B×h×w
        return F.interpolate(labels[:, None].float(), size=hw, mode="nearest")[:, 0].long()
    logits = model(x)  # B×K×h×w
    if tuple(logits.shape[-2:]) != tuple(hw):
        logits = F.interpolate(logits, size=hw, mode="bilinear", align_corners=False)
    return logits.argmax(1)


@torch.no_grad()
def predict(model: nn.Module, images: Any) -> list[np.ndarray] | np.ndarray:
    """See the module docstring; a single image in gives a single array out."""
    single = isinstance(images, Image.Image) or (isinstance(images, np.ndarray) and images.ndim == 3)
    arrays = [as_rgb_array(im) for im in ([images] if single else images)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = []
        for image in arrays:
            hw = image.shape[:2]
            x = to_input(model, image, network_size(model, hw), device)
            out.append(labels_at(model, x, hw)[0].cpu().numpy().astype(np.int64))
    finally:
        model.train(was_training)
    return out[0] if single else out
