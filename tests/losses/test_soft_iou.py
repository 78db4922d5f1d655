import pytest
import torch

from segkd.losses import build_loss
from segkd.losses.soft_iou import SoftIoULoss


def test_global_micro_score(logits, target):
    # I = 1/2 + 1/4 = 3/4; Σp = 2 (two valid pixels); Σt = 2; U = 4 − 3/4 = 13/4; loss = 1 − 3/13
    assert SoftIoULoss()(logits, target).item() == pytest.approx(10 / 13, abs=1e-6)


def test_count_ignored_reproduces_the_reference(logits, target):
    # the ignored pixel adds its probability mass (1) to Σp: U = 5 − 3/4 = 17/4; loss = 1 − 3/17
    assert SoftIoULoss(count_ignored=True)(logits, target).item() == pytest.approx(14 / 17, abs=1e-6)


def test_not_a_per_class_mean():
    # class 0 covers 3 pixels predicted perfectly, class 1 one pixel predicted as class 0
    target = torch.tensor([[[0, 0, 0, 1]]])
    logits = torch.zeros(1, 2, 1, 4)
    logits[:, 0] = 50.0
    # I = 3, U = 4 + 4 − 3 = 5 -> 1 − 3/5 (a per-class mean would give 1 − (3/4 + 0)/2)
    assert build_loss({"name": "soft_iou"})[2](logits, target).item() == pytest.approx(0.4, abs=1e-6)
