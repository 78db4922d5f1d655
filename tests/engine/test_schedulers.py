"""LR schedules against hand-computed values (FastSegFormer, PP-MobileSeg, EfficientDet-seg recipes)."""

import math

import pytest
import torch

from segkd.config import TrainConfig
from segkd.engine.schedulers import LRSchedule, Scheduler


def fastsegformer(**kw) -> LRSchedule:
    """FastSegFormer-P: Adam 1e-4 -> 1e-6 over 1000 epochs, warm-up 3 epochs from 1e-5, min lr the last 15."""
    cfg = TrainConfig(epochs=1000, lr=1e-4, min_lr=1e-6, scheduler="warm_cosine", sched_step="epoch",
                      warmup_epochs=3, warmup_start_lr=1e-5, min_lr_epochs=15, **kw)
    return LRSchedule.from_config(cfg, steps_per_epoch=27)


def test_warm_cosine_matches_the_reference_formula():
    s = fastsegformer()
    assert s.total == 1000 and s.warmup == 3 and s.min_lr_steps == 15  # epochs: steps_per_epoch is irrelevant
    assert s(0) == pytest.approx(1e-5)  # warm-up start
    assert s(1) == pytest.approx((1e-4 - 1e-5) / 9 + 1e-5)  # quadratic: (1/3)² of the way = 2e-5
    assert s(2) == pytest.approx((1e-4 - 1e-5) * 4 / 9 + 1e-5)
    assert s(3) == pytest.approx(1e-4)  # end of warm-up = lr
    mid = 3 + (1000 - 3 - 15) / 2  # cos(π/2) = 0: half-way between lr and min lr
    assert s(mid) == pytest.approx((1e-4 + 1e-6) / 2)
    assert s(4) == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6) * (1 + math.cos(math.pi / 982)))
    assert s(984) == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6) * (1 + math.cos(math.pi * 981 / 982)))
    assert s(985) == s(999) == 1e-6  # the last 15 epochs run at min lr


def test_warm_cosine_start_defaults_to_a_tenth_of_lr():
    cfg = TrainConfig(epochs=100, lr=1e-3, min_lr=0.0, scheduler="warm_cosine", sched_step="epoch",
                      warmup_epochs=2, warmup_start_lr=None)
    assert LRSchedule.from_config(cfg, 10)(0) == pytest.approx(1e-4)


def test_warm_cosine_per_iteration_counts_iterations():
    cfg = TrainConfig(epochs=10, lr=1e-4, min_lr=1e-6, scheduler="warm_cosine", sched_step="iter",
                      warmup_epochs=1, warmup_start_lr=1e-5, min_lr_epochs=2)
    s = LRSchedule.from_config(cfg, steps_per_epoch=20)
    assert (s.total, s.warmup, s.min_lr_steps) == (200, 20, 40)
    assert s(10) == pytest.approx((1e-4 - 1e-5) / 4 + 1e-5)
    assert s(160) == 1e-6


def test_poly():
    cfg = TrainConfig(epochs=10, lr=0.01, min_lr=1e-4, scheduler="poly", power=0.9, sched_step="iter")
    s = LRSchedule.from_config(cfg, steps_per_epoch=10)
    assert s(0) == pytest.approx(0.01)
    assert s(50) == pytest.approx((0.01 - 1e-4) * 0.5**0.9 + 1e-4)
    assert s(100) == pytest.approx(1e-4)


def test_pp_mobileseg_linear_warmup_then_linear_decay():
    """LinearWarmup(1500 iters, 1e-6 -> 6e-4) then PolynomialDecay(power 1, end 0) over 78,500 iters."""
    cfg = TrainConfig(epochs=1, lr=6e-4, min_lr=0.0, scheduler="linear", sched_step="iter",
                      warmup_iters=1500, warmup_start_lr=1e-6)
    s = LRSchedule.from_config(cfg, steps_per_epoch=80_000)
    assert s(0) == pytest.approx(1e-6)
    assert s(750) == pytest.approx(1e-6 + (6e-4 - 1e-6) / 2)
    assert s(1500) == pytest.approx(6e-4)
    assert s(1500 + 78_500 / 2) == pytest.approx(3e-4)
    assert s(80_000) == pytest.approx(0.0)


def test_exponential_per_epoch():
    """EfficientDet-seg: AdamW 7e-5, ExponentialLR(0.975) per epoch: ×0.0795 after 100 epochs."""
    cfg = TrainConfig(epochs=100, lr=7e-5, scheduler="exponential", gamma=0.975, sched_step="epoch")
    s = LRSchedule.from_config(cfg, steps_per_epoch=366)
    assert s(0) == pytest.approx(7e-5)
    assert s(1) == pytest.approx(7e-5 * 0.975)
    assert s(100) == pytest.approx(7e-5 * 0.0795, rel=1e-3)


def test_step_reaches_min_lr_in_the_last_stage():
    cfg = TrainConfig(epochs=100, lr=1e-4, min_lr=1e-6, scheduler="step", steps=10, sched_step="epoch")
    s = LRSchedule.from_config(cfg, 1)
    rate = (1e-6 / 1e-4) ** (1 / 9)
    assert s(9) == pytest.approx(1e-4)
    assert s(10) == pytest.approx(1e-4 * rate)
    assert s(95) == pytest.approx(1e-6)


def test_constant_means_constant_even_with_a_warm_up_set():
    cfg = TrainConfig(epochs=10, lr=0.1, scheduler="constant", sched_step="iter", warmup_iters=10,
                      warmup_start_lr=0.0)
    s = LRSchedule.from_config(cfg, 10)
    assert s(0) == s(5) == s(10) == s(99) == 0.1


def test_scheduler_applies_group_multipliers_and_resumes_from_t():
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p1], "lr_mult": 0.1}, {"params": [p2], "lr_mult": 10.0}], lr=1.0)
    cfg = TrainConfig(epochs=10, lr=0.01, min_lr=0.0, scheduler="poly", power=1.0, sched_step="epoch")
    sched = Scheduler(opt, LRSchedule.from_config(cfg, 1), per_iter=False)
    sched.set(5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.0005, 0.05])
    other = Scheduler(opt, LRSchedule.from_config(cfg, 1), per_iter=False)
    other.load_state_dict(sched.state_dict())
    assert other.lr == pytest.approx(0.005)
