"""What the region losses (dice, soft-IoU, Lovász) share: softmax probabilities, one-hot labels, a valid mask.

Logits smaller than the label are upsampled first (`resize_to`). Pixels labelled `ignore_index` get an
all-zero one-hot row and `valid = 0`; each loss decides how they count.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from segkd.losses.resize import resize_to


def probs_and_one_hot(logits: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B×K×h×w logits, B×H×W labels) -> (probs B×K×H×W, one-hot B×K×H×W, valid B×1×H×W), all float."""
    logits = resize_to(logits, target.shape[-2:])
    probs = logits.float().softmax(dim=1)  # B×K×H×W
    valid = target != ignore_index  # B×H×W
    labels = target.masked_fill(~valid, 0).long()
    one_hot = F.one_hot(labels, probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)  # B×K×H×W
    valid = valid.unsqueeze(1).to(probs.dtype)  # B×1×H×W
    return probs, one_hot * valid, valid
