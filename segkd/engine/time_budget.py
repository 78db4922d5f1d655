"""`train.time=H`: train for a wall-clock budget of H hours instead of an epoch count (Ultralytics' `time=`).

The run starts with `train.epochs` as its first guess. After every epoch the budget re-estimates the epoch count
from the mean wall time of the epochs run so far (validation included):

    epochs = epochs done + round(seconds left / mean epoch seconds)      (at least the epoch that just ran)

and stretches the schedule to it: `train.epochs` and every recipe phase (warm-up, min-lr tail, backbone freeze;
`segkd.config.recipe.PHASES`) scale from the run's starting recipe, the lr schedule and the plan are rebuilt, and
the epoch that crosses the budget is the last one. A run therefore ends within one epoch of the budget.

The wall clock counts from the first step and is saved in last.pt (`train_seconds`), so a resumed run keeps only
the rest of its budget. `results.csv` keeps the seconds each epoch took in its `time` column.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

from segkd.config import config_to_dict
from segkd.config.recipe import PHASES, scale_phases
from segkd.engine.distributed import reduce_mean


class TimeBudget:
    """Hangs on a Trainer's events; `attach(trainer)` when `train.time` is set."""

    def __init__(self, hours: float):
        self.seconds = hours * 3600.0
        self.recipe: dict = {}  # the run's starting train/distill sections, phases scaled from them
        self.first_epoch = 0  # the first epoch of this session (a resumed run times its own epochs)

    def attach(self, trainer: Any) -> None:
        trainer.add_callback("on_train_start", self.start)
        trainer.add_callback("on_train_epoch_end", self.update)

    def start(self, trainer: Any) -> None:
        cfg = config_to_dict(trainer.cfg)
        self.recipe = {"train": cfg["train"], "distill": cfg["distill"]}
        self.first_epoch = trainer.start_epoch
        spent = trainer.clock.elapsed()
        left = f"{self.left(spent):.0f} s of it left" if spent else "stretched to it"
        trainer.log(f"time budget: train.time={trainer.cfg.train.time:g} h = {self.seconds:.0f} s, {left}: the "
                    f"epoch count ({trainer.cfg.train.epochs} to start) and the lr schedule are re-estimated after "
                    "each epoch, and training stops at the budget")

    def left(self, spent: float) -> float:
        return max(self.seconds - spent, 0.0)

    def update(self, trainer: Any) -> None:
        """After epoch `trainer.epoch`: the new epoch count (the same on every rank), and the stretched schedule."""
        done = trainer.epoch + 1
        session = trainer.clock.session()
        # the epochs before this one had their validation timed; assume this one's costs the same
        timing = reduce_mean({"spent": trainer.clock.elapsed(), "per_epoch": session / (done - self.first_epoch)})
        spent, per_epoch = timing["spent"], max(timing["per_epoch"], 1e-6)
        epochs = done + (0 if spent >= self.seconds else round(self.left(spent) / per_epoch))
        if epochs != trainer.cfg.train.epochs:
            self.stretch(trainer.cfg, epochs)
            trainer.replan()
            trainer.log(f"time budget: {per_epoch:.1f} s/epoch, {self.left(spent):.0f} s left -> "
                        f"{epochs} epochs (schedule stretched)")

    def stretch(self, cfg: Any, epochs: int) -> None:
        """`cfg.train.epochs = epochs`, with every recipe phase scaled from the starting recipe."""
        raw = copy.deepcopy(self.recipe)
        raw["train"]["epochs"] = epochs
        scale_phases(raw, self.recipe["train"]["epochs"], set())
        cfg.train.epochs = epochs
        for key, _ in PHASES:
            section, name = key.split(".")
            if raw.get(section) is not None:
                setattr(getattr(cfg, section), name, raw[section][name])


class WallClock:
    """Training seconds of a run across resumes: `elapsed()` = the seconds saved in last.pt + this session's."""

    def __init__(self, before: float = 0.0):
        self.before = before
        self.started: float | None = None

    def start(self) -> None:
        self.started = time.perf_counter()

    def session(self) -> float:
        return 0.0 if self.started is None else time.perf_counter() - self.started

    def elapsed(self) -> float:
        return self.before + self.session()


def finished(seconds: float, hours: float | None) -> bool:
    """Whether `seconds` of training used up a budget of `hours` (never, without one)."""
    return hours is not None and math.isfinite(seconds) and seconds >= hours * 3600.0
