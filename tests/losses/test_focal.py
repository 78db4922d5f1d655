import math

import pytest

from segkd.losses import build_loss
from segkd.losses.focal import FocalLoss

LN2 = math.log(2.0)


def test_hand_computed(logits, target):
    # pixel 0: 0.5·(1 − 1/2)²·ln 2 = 0.125 ln 2; pixel 1: 0.5·(3/4)²·2 ln 2 = 0.5625 ln 2; mean = 0.34375 ln 2
    assert FocalLoss(alpha=0.5, gamma=2.0)(logits, target).item() == pytest.approx(0.34375 * LN2, abs=1e-6)


def test_gamma_zero_alpha_one_is_cross_entropy(logits, target):
    assert FocalLoss(alpha=1.0, gamma=0.0)(logits, target).item() == pytest.approx(1.5 * LN2, abs=1e-6)


def test_built_from_yaml_spec(logits, target):
    _, _, loss = build_loss({"name": "focal", "alpha": 0.25, "gamma": 1.0})
    # 0.25·(1/2·ln 2 + 3/4·2 ln 2)/2 = 0.25·ln 2
    assert loss(logits, target).item() == pytest.approx(0.25 * LN2, abs=1e-6)
