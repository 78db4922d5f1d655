"""Tiny hand-checkable inputs shared by the segmentation-loss tests.

Three pixels in a row, two classes:
    pixel 0: logits [0, 0]      -> p = [1/2, 1/2], label 0
    pixel 1: logits [ln 3, 0]   -> p = [3/4, 1/4], label 1
    pixel 2: logits [5, -5]     -> label 255 (ignored; chosen to change every loss if it were counted)
"""

import math

import pytest
import torch


@pytest.fixture
def logits():
    return torch.tensor([[[[0.0, math.log(3.0), 5.0]], [[0.0, 0.0, -5.0]]]])  # 1×2×1×3


@pytest.fixture
def target():
    return torch.tensor([[[0, 1, 255]]])  # 1×1×3
