import math

import pytest
import torch

from segkd.errors import ConfigError
from segkd.losses import build_loss
from segkd.losses.ce import CrossEntropyLoss

LN2 = math.log(2.0)


def test_mean_over_non_ignored_pixels(logits, target):
    # pixel 0: −ln 1/2 = ln 2; pixel 1: −ln 1/4 = 2 ln 2; mean = 1.5 ln 2
    assert CrossEntropyLoss()(logits, target).item() == pytest.approx(1.5 * LN2, abs=1e-6)


def test_class_weights_weight_sum_and_normaliser(logits, target):
    # (1·ln 2 + 3·2 ln 2) / (1 + 3) = 7/4 ln 2
    loss = CrossEntropyLoss(class_weights=[1.0, 3.0])(logits, target)
    assert loss.item() == pytest.approx(1.75 * LN2, abs=1e-6)


@pytest.mark.parametrize(
    "thresh, min_kept, expected",
    [
        (0.6, 0, 1.5 * LN2),  # p_true = 0.5, 0.25: both under 0.6
        (0.4, 0, 2 * LN2),  # only pixel 1 (p 0.25) is hard
        (0.4, 2, 1.5 * LN2),  # min_kept forces both
        (0.1, 1, 2 * LN2),  # none under 0.1; the single hardest is pixel 1
    ],
)
def test_ohem(logits, target, thresh, min_kept, expected):
    loss = CrossEntropyLoss(ohem_thresh=thresh, ohem_min_kept=min_kept)(logits, target)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_small_logits_are_upsampled_to_the_label():
    logits = torch.zeros(2, 3, 2, 2, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8))
    loss = CrossEntropyLoss()(logits, target)
    assert loss.item() == pytest.approx(math.log(3.0), abs=1e-6)
    loss.backward()
    assert logits.grad is not None


def test_all_ignored_gives_zero_not_nan(logits):
    assert CrossEntropyLoss()(logits, torch.full((1, 1, 3), 255)).item() == 0.0


def test_custom_ignore_index(logits):
    target = torch.tensor([[[0, 1, 2]]])  # 2 = num_classes, ignored (FastSegFormer's convention)
    assert CrossEntropyLoss(ignore_index=2)(logits, target).item() == pytest.approx(1.5 * LN2, abs=1e-6)


def test_built_from_yaml_spec(logits, target):
    name, weight, loss = build_loss({"name": "ce", "weight": 0.8, "class_weights": [1, 3], "ignore_index": 255})
    assert (name, weight) == ("ce", 0.8)
    assert loss(logits, target).item() == pytest.approx(1.75 * LN2, abs=1e-6)
    with pytest.raises(ConfigError, match="loss 'ce' has no option 'ohem'"):
        build_loss({"name": "ce", "ohem": 0.7})


def test_build_loss_fills_ignore_index_default_unless_set():
    _, _, loss = build_loss({"name": "ce"}, defaults={"ignore_index": 4})
    assert loss.ignore_index == 4
    _, _, loss = build_loss({"name": "ce", "ignore_index": 7}, defaults={"ignore_index": 4})
    assert loss.ignore_index == 7
