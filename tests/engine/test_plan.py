"""The run plan: scaled phases on a short run, the warnings, and the loaded-backbone rule for freezing."""

import pytest

from segkd.config import ModelConfig, load_config
from segkd.engine.plan import RunPlan, backbone_loaded
from segkd.engine.schedulers import LRSchedule


def plan_for(overrides, steps_per_epoch=15, weights=True) -> RunPlan:
    cfg = load_config("fastsegformer-p", overrides)
    if weights:
        cfg.model.backbone_weights = "poolformer_s12.pth"
    schedule = LRSchedule.from_config(cfg.train, steps_per_epoch)
    return RunPlan.from_config(cfg, schedule, steps_per_epoch, cfg.train.freeze_epochs)


def test_a_short_run_reaches_the_configured_lr_and_keeps_a_proportional_tail():
    plan = plan_for(["train.epochs=100", "train.lr=1e-3", "train.sched_step=iter"], steps_per_epoch=10)
    lrs = plan.lrs()
    assert len(lrs) == 1000 and max(lrs) == pytest.approx(1e-3, rel=1e-4)
    assert lrs.index(max(lrs)) == 3  # warm-up 3 epochs of 1000 -> 0.3 of 100 = 3 steps
    assert sum(lr == 1e-6 for lr in lrs) == 15  # the min-lr tail: 15 of 1000 epochs -> 1.5 epochs = 15 steps
    assert plan.freeze_epochs == 5 and plan.messages() == []


def test_per_epoch_schedule_of_a_20_epoch_run():
    plan = plan_for(["train.epochs=20", "train.lr=1e-3"])
    lrs = plan.lrs()
    assert lrs[0] == pytest.approx(1e-5) and max(lrs) >= 0.99e-3  # was: 1e-6 from epoch 6 on, 1e-3 never used
    assert plan.line() == (
        "plan: 20 epochs × 15 steps, warm_cosine per epoch · lr 1e-05 → 0.001 at epoch 0.06 (warm-up end) · "
        f"peak {max(lrs):.3g} at epoch 1, last {lrs[-1]:.3g} · 1e-06 for the last 0.3 epochs · "
        "backbone frozen in epochs 1-1")


def test_warns_when_the_lr_is_never_reached_or_the_backbone_frozen_too_long():
    plan = plan_for(["train.epochs=20", "train.warmup_epochs=30", "train.freeze_epochs=15"])
    warnings = plan.messages()
    assert len(warnings) == 2
    assert warnings[0] == ("[yellow]warning:[/] train.lr=0.0001 is never reached: this run peaks at 4.61e-05 "
                                   "(warm-up 30 of 20 epochs, warm_cosine per epoch: shorten train.warmup_epochs)")
    assert warnings[1] == ("[yellow]warning:[/] the backbone is frozen for 15 of 20 epochs, more than half the run "
                           "(lower train.freeze_epochs)")


def test_constant_lr_has_no_warm_up():
    plan = plan_for(["train.epochs=20", "train.scheduler=constant", "train.lr=1e-3"])
    assert set(plan.lrs()) == {1e-3}
    assert "lr 0.001 throughout" in plan.line()


def test_a_random_backbone_is_never_frozen():
    plan = plan_for(["train.epochs=20", "train.freeze_epochs=5"], weights=False)
    assert plan.freeze_epochs == 0 and plan.skipped_freeze == 5
    assert plan.messages()[0].startswith("note: train.freeze_epochs=5 skipped: the backbone is random")
    assert "frozen" not in plan.line()


@pytest.mark.parametrize("model, loaded", [
    (ModelConfig(), False),
    (ModelConfig(weights="best.pt"), True),
    (ModelConfig(backbone_weights="poolformer_s12.pth"), True),
    (ModelConfig(options={"pretrained": True}), True),
    (ModelConfig(options={"backbone_weights": "mit_b0.pth"}), True),
])
def test_backbone_loaded(model, loaded):
    assert backbone_loaded(model) is loaded


def test_a_warm_up_inside_the_first_epoch_stepped_per_epoch_points_at_sched_step():
    plan = plan_for(["train.epochs=1", "train.lr=1e-3"])  # epoch 0 runs at warmup_start_lr
    assert plan.messages()[0].endswith("(warm-up 0.003 of 1 epochs, warm_cosine per epoch: step it per iteration: "
                                       "train.sched_step=iter)")


def test_the_ema_horizon_scales_with_a_short_run_and_stays_on_a_long_one():
    short = plan_for(["train.epochs=20", "train.ema=true", "train.ema_decay=0.9999"])  # 300 steps
    assert short.run_ema_decay == pytest.approx(1 - 1 / 30)  # time constant: a tenth of the run
    assert short.line().endswith("EMA decay 0.9667")
    assert short.messages() == ["note: train.ema_decay 0.9999 -> 0.9667 for this run (its horizon of 10000 steps is "
                                "longer than a tenth of the run's 300 steps)"]
    long = plan_for(["train.epochs=1000", "train.ema=true", "train.ema_decay=0.999"])  # 15,000 steps
    assert long.run_ema_decay == 0.999 and long.messages() == []
