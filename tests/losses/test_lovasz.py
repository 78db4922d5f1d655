import pytest
import torch

from segkd.losses import build_loss
from segkd.losses.lovasz import LovaszSoftmaxLoss, lovasz_grad


def test_lovasz_grad():
    # fg sorted [0, 1], G = 1: J = 1 − [1/2, 0/2] = [1/2, 1] -> grad [1/2, 1/2]
    assert lovasz_grad(torch.tensor([0.0, 1.0])).tolist() == pytest.approx([0.5, 0.5])
    # fg sorted [1, 0]: J = 1 − [0/1, 0/2] = [1, 1] -> grad [1, 0]
    assert lovasz_grad(torch.tensor([1.0, 0.0])).tolist() == pytest.approx([1.0, 0.0])


def test_hand_computed(logits, target):
    # class 0: errors |t − p| = [1/2, 3/4] -> sorted [3/4, 1/2], fg [0, 1], grad [1/2, 1/2] -> 5/8
    # class 1: errors [1/2, 3/4] -> sorted [3/4, 1/2], fg [1, 0], grad [1, 0] -> 3/4
    # mean = 11/16
    assert LovaszSoftmaxLoss()(logits, target).item() == pytest.approx(11 / 16, abs=1e-6)


def test_only_present_classes_count(logits, target):
    third = torch.full((1, 1, 1, 3), -1e4)  # a class with ~0 probability and no pixels
    loss = LovaszSoftmaxLoss()(torch.cat([logits, third], dim=1), target)
    assert loss.item() == pytest.approx(11 / 16, abs=1e-6)  # a mean over 3 classes would be 11/24


def test_all_ignored_is_zero_with_a_graph(logits):
    logits = logits.clone().requires_grad_(True)
    loss = build_loss({"name": "lovasz"})[2](logits, torch.full((1, 1, 3), 255))
    assert loss.item() == 0.0
    loss.backward()


def test_pp_mobileseg_mix(logits, target):
    # 0.8·CE + 0.2·Lovász as two YAML terms
    terms = [build_loss({"name": "ce", "weight": 0.8}), build_loss({"name": "lovasz", "weight": 0.2})]
    total = sum(w * fn(logits, target) for _, w, fn in terms)
    assert total.item() == pytest.approx(0.8 * 1.5 * 0.6931472 + 0.2 * 11 / 16, abs=1e-5)
