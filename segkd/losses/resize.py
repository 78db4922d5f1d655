"""One resize-to-match for every loss: logits smaller than their label are upsampled before the loss.

Segmentation and KD losses compare maps of possibly different sizes (a 224 student against a 512 label or
teacher). They all call `resize_to` so the rule is written once: bilinear, unchanged when already the size.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor


def resize_to(x: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
    """B×C×h×w -> B×C×H×W (bilinear); `x` itself when it already has spatial `size`."""
    size = tuple(int(s) for s in size[-2:])
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
