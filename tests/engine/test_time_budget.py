"""`train.time`: a wall-clock budget instead of an epoch count, the schedule stretched to it, kept across resume.

Each epoch of the tiny run is padded with a sleep so a 6 s budget needs several epochs whatever the shared
machine's load; the assertions use the measured times (results.csv `elapsed`: training seconds so far).
"""

from __future__ import annotations

import csv
import io
import time

import pytest
import torch
from rich.console import Console

from segkd.config import load_config
from segkd.engine.checkpointing import resume_config
from segkd.engine.time_budget import TimeBudget
from segkd.engine.trainer import Trainer
from segkd.errors import ConfigError, Interrupted

from .conftest import write_preset

BUDGET_S = 6.0
PAD_S = 0.3  # sleep added to every epoch


def budget_trainer(tmp_path, voc_root, overrides=(), stop_after: int | None = None):
    preset = write_preset(tmp_path / "tiny.yaml", train={"epochs": 2, "warmup_epochs": 1.0})
    cfg = load_config(str(preset), [f"data.root={voc_root}", f"project={tmp_path / 'runs'}", "name=t",
                                    f"train.time={BUDGET_S / 3600}", *overrides])
    log = io.StringIO()
    trainer = Trainer(cfg, console=Console(file=log, width=300))
    trainer.add_callback("on_train_epoch_start", lambda t: time.sleep(PAD_S))
    if stop_after is not None:
        trainer.add_callback("on_fit_epoch_end", lambda t: setattr(t.stop, "requested", t.epoch + 1 == stop_after))
    return trainer, log


def elapsed(run_dir) -> tuple[list[float], float]:
    """results.csv's `elapsed` column and the longest epoch in it (saving included)."""
    with open(run_dir / "results.csv", newline="") as f:
        ends = [float(row["elapsed"]) for row in csv.DictReader(f)]
    return ends, max(b - a for a, b in zip([0.0, *ends], ends))


def test_stops_within_one_epoch_of_the_budget_with_the_schedule_stretched(tmp_path, voc_root):
    trainer, log = budget_trainer(tmp_path, voc_root)
    summary = trainer.train()
    ends, longest = elapsed(trainer.save_dir)
    epochs = len(ends)
    assert epochs == summary["epochs"] == trainer.cfg.train.epochs > 2  # 2 was only the first guess
    assert abs(ends[-1] - BUDGET_S) <= longest  # ended within one epoch of the budget
    last = torch.load(trainer.weights_dir / "last.pt", weights_only=True)
    assert last["train_seconds"] == pytest.approx(ends[-1], abs=1e-4)  # the clock results.csv shows
    # the schedule and its phases follow the new epoch count: warm-up 1 of 2 epochs = half the run
    assert last["config"]["train"]["epochs"] == epochs
    assert last["config"]["train"]["warmup_epochs"] == pytest.approx(round(epochs / 2, 4))
    assert trainer.scheduler.schedule.total == epochs * trainer.steps_per_epoch
    text = log.getvalue()
    assert f"time budget: train.time={BUDGET_S / 3600:g} h = 6 s" in text
    assert "(schedule stretched)" in text


def test_resume_keeps_the_rest_of_the_budget(tmp_path, voc_root):
    trainer, _ = budget_trainer(tmp_path, voc_root, stop_after=1)
    with pytest.raises(Interrupted):
        trainer.train()
    last_pt = trainer.weights_dir / "last.pt"
    spent = torch.load(last_pt, weights_only=True)["train_seconds"]
    assert 0 < spent < BUDGET_S

    resumed = Trainer(resume_config(last_pt), console=Console(file=(log := io.StringIO()), width=300))
    resumed.add_callback("on_train_epoch_start", lambda t: time.sleep(PAD_S))
    summary = resumed.train()
    ends, longest = elapsed(resumed.save_dir)
    assert ends[0] == pytest.approx(spent, abs=1e-4) and len(ends) > 1  # epoch 1 from before the stop, then the resumed
    assert summary["time_s"] <= BUDGET_S - spent + longest  # only the rest of the budget was used
    assert abs(ends[-1] - BUDGET_S) <= longest
    assert f"{BUDGET_S - spent:.0f} s of it left" in log.getvalue()
    with pytest.raises(ConfigError, match=r"already finished its train.time=.* h; nothing to resume"):
        Trainer(resume_config(last_pt)).train()


def test_train_time_must_be_positive(tmp_path, voc_root):
    with pytest.raises(ConfigError, match=r"train.time=0.0 must be > 0"):
        load_config(str(write_preset(tmp_path / "tiny.yaml")), ["train.time=0"])


def test_stretch_scales_phases_from_the_starting_recipe(tmp_path):
    cfg = load_config(str(write_preset(tmp_path / "tiny.yaml", train={"epochs": 10, "warmup_epochs": 2.0,
                                                                      "min_lr_epochs": 1.0, "freeze_epochs": 4})))
    budget = TimeBudget(1.0)
    budget.recipe = {"train": vars(cfg.train).copy(), "distill": None}
    budget.stretch(cfg, 5)
    assert (cfg.train.epochs, cfg.train.warmup_epochs, cfg.train.min_lr_epochs, cfg.train.freeze_epochs) == (5, 1.0, 0.5, 2)
    budget.stretch(cfg, 20)  # from the recipe again, not from the last stretch
    assert (cfg.train.epochs, cfg.train.warmup_epochs, cfg.train.freeze_epochs) == (20, 4.0, 8)
