"""EMA of weights: the ramped decay, averaged parameters and buffers, copied integer buffers."""

import pytest
import torch
from torch import nn

from segkd.engine.ema import ModelEMA, decay_for_run


def net():
    return nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1))


def set_weight(model, value):
    with torch.no_grad():
        model[0].weight.fill_(value)


def test_decay_ramp():
    ema = ModelEMA(net(), decay=0.999)
    assert ema.decay_at(0) == 0.0  # the first update copies
    assert ema.decay_at(1) == pytest.approx(0.5)
    assert ema.decay_at(9) == pytest.approx(0.9)
    assert ema.decay_at(10_000) == pytest.approx(0.999)


def test_update_averages_weights_and_float_buffers():
    model = net()
    ema = ModelEMA(model, decay=0.5)
    set_weight(model, 2.0)
    model[1].running_mean.fill_(4.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update(model)  # d = 0: copy
    assert ema.module[0].weight.item() == pytest.approx(2.0)
    set_weight(model, 4.0)
    model[1].running_mean.fill_(0.0)
    ema.update(model)  # d = min(0.5, 1/2) = 0.5
    assert ema.module[0].weight.item() == pytest.approx(3.0)
    assert ema.module[1].running_mean.item() == pytest.approx(2.0)
    assert ema.module[1].num_batches_tracked.item() == 7  # integers are copied, not averaged
    set_weight(model, 6.0)
    ema.update(model)  # d = min(0.5, 2/3) = 0.5
    assert ema.module[0].weight.item() == pytest.approx(4.5)
    assert ema.updates == 3


def test_ema_copy_is_frozen_and_in_eval_mode():
    model = net().train()
    ema = ModelEMA(model)
    assert not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_state_round_trip():
    model = net()
    ema = ModelEMA(model, decay=0.9)
    for v in (1.0, 2.0, 3.0):
        set_weight(model, v)
        ema.update(model)
    other = ModelEMA(net(), decay=0.9)
    other.load_state_dict(ema.state_dict(), ema.module.state_dict())
    assert other.updates == 3
    assert torch.equal(other.module[0].weight, ema.module[0].weight)


@pytest.mark.parametrize("decay, steps, expected", [(0.9999, 300, 1 - 1 / 30), (0.999, 80_000, 0.999),
                                                    (0.99, 5, 0.0)])
def test_decay_for_run_caps_the_horizon_at_a_tenth_of_the_run(decay, steps, expected):
    assert decay_for_run(decay, steps) == pytest.approx(expected)
