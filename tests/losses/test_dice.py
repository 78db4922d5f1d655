import pytest
import torch

from segkd.losses import build_loss
from segkd.losses.dice import DiceLoss


def test_hand_computed(logits, target):
    # class 0: Σpt = 1/2, Σp = 1/2 + 3/4, Σt = 1 -> dice 1/(9/4) = 4/9
    # class 1: Σpt = 1/4, Σp = 1/2 + 1/4, Σt = 1 -> dice (1/2)/(7/4) = 2/7
    # loss = 1 − (4/9 + 2/7)/2 = 40/63
    assert DiceLoss(smooth=0.0)(logits, target).item() == pytest.approx(40 / 63, abs=1e-6)


def test_default_smooth_is_tiny(logits, target):
    assert DiceLoss()(logits, target).item() == pytest.approx(40 / 63, abs=1e-4)


def test_perfect_prediction_is_zero():
    target = torch.tensor([[[0, 1], [1, 0]]])
    logits = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 50
    assert DiceLoss()(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_upsamples_and_backpropagates():
    logits = torch.zeros(1, 2, 2, 2, requires_grad=True)
    loss = build_loss({"name": "dice"})[2](logits, torch.zeros(1, 4, 4, dtype=torch.long))
    # class 0: Σpt = 8, Σp + Σt = 8 + 16 -> 2/3; class 1: 0 / 8 -> 0; loss = 1 − 1/3
    assert loss.item() == pytest.approx(2 / 3, abs=1e-4)
    loss.backward()
    assert logits.grad.abs().sum() > 0
