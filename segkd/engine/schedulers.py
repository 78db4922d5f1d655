"""Learning-rate schedules: pure functions of the step `t`, stepped per epoch or per optimizer step.

A schedule maps `t` (epochs or optimizer steps, `train.sched_step`) to the base lr; the `Scheduler` writes
`base lr × lr_mult` into every optimizer group. Being a pure function of `t`, it resumes exactly from `t` alone.

    warm_cosine  FastSegFormer's yolox warm cosine: quadratic warm-up from warmup_start_lr for the first W
                 steps, cosine from lr to min_lr, min_lr for the last M steps (M = train.min_lr_epochs):
                   t <= W      (lr - start)·(t/W)² + start
                   t >= T - M  min_lr
                   otherwise   min_lr + ½(lr - min_lr)(1 + cos(π(t - W)/(T - W - M)))
    poly         (lr - min_lr)·(1 - t'/T')^power + min_lr
    linear       poly with power 1 (PP-MobileSeg: linear warm-up 1500 iters from 1e-6, then linear decay)
    exponential  lr·gamma^t' (EfficientDet-seg: 0.975 per epoch)
    step         `steps` equal stages, each × (min_lr/lr)^(1/(steps-1)); the last stage runs at min_lr
    constant     lr from the first step to the last (no warm-up)
Every schedule but warm_cosine and constant starts with a linear warm-up from warmup_start_lr to lr over the first W steps
when W > 0; then t' = t - W runs over T' = T - W. warmup_start_lr None means 0.1·lr.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from segkd.config import TrainConfig


@dataclass(frozen=True)
class LRSchedule:
    """Base lr as a function of step `t` in [0, total]."""

    kind: str
    lr: float
    min_lr: float
    total: float  # T, in scheduler steps
    warmup: float = 0.0  # W
    warmup_start_lr: float | None = None
    min_lr_steps: float = 0.0  # M (warm_cosine)
    power: float = 0.9
    gamma: float = 0.975
    steps: int = 10

    @classmethod
    def from_config(cls, cfg: TrainConfig, steps_per_epoch: int) -> "LRSchedule":
        """Convert the config's epoch / iteration counts into scheduler steps."""
        if cfg.sched_step == "epoch":
            per, total = 1.0, float(cfg.epochs)
            warmup = cfg.warmup_iters / steps_per_epoch if cfg.warmup_iters else cfg.warmup_epochs
        else:
            per, total = float(steps_per_epoch), float(cfg.epochs * steps_per_epoch)
            warmup = float(cfg.warmup_iters) if cfg.warmup_iters else cfg.warmup_epochs * steps_per_epoch
        return cls(
            kind=cfg.scheduler, lr=cfg.lr, min_lr=cfg.min_lr, total=total, warmup=warmup,
            warmup_start_lr=cfg.warmup_start_lr, min_lr_steps=cfg.min_lr_epochs * per,
            power=cfg.power, gamma=cfg.gamma, steps=cfg.steps,
        )

    @property
    def start_lr(self) -> float:
        return 0.1 * self.lr if self.warmup_start_lr is None else self.warmup_start_lr

    def __call__(self, t: float) -> float:
        if self.kind == "constant":
            return self.lr
        if self.kind == "warm_cosine":
            return self._warm_cosine(t)
        if self.warmup > 0 and t < self.warmup:
            return self.start_lr + (self.lr - self.start_lr) * t / self.warmup
        t, span = t - self.warmup, max(self.total - self.warmup, 1e-12)
        if self.kind in ("poly", "linear"):
            power = 1.0 if self.kind == "linear" else self.power
            return (self.lr - self.min_lr) * max(0.0, 1.0 - t / span) ** power + self.min_lr
        if self.kind == "exponential":
            return self.lr * self.gamma**t
        if self.kind == "step":
            if self.steps <= 1:
                return self.lr
            rate = (self.min_lr / self.lr) ** (1.0 / (self.steps - 1))
            return self.lr * rate ** min(math.floor(t / (span / self.steps)), self.steps - 1)
        raise ValueError(f"unknown schedule '{self.kind}'")

    def _warm_cosine(self, t: float) -> float:
        w, m = self.warmup, self.min_lr_steps
        if w > 0 and t <= w:
            return (self.lr - self.start_lr) * (t / w) ** 2 + self.start_lr
        if t >= self.total - m:
            return self.min_lr
        phase = (t - w) / (self.total - w - m)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * phase))


class Scheduler:
    """Writes `schedule(t) × lr_mult` into each optimizer group; `per_iter` says what `t` counts."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: LRSchedule, per_iter: bool):
        self.optimizer = optimizer
        self.schedule = schedule
        self.per_iter = per_iter
        self.t = 0.0
        self.lr = schedule(0.0)

    def set(self, t: float) -> float:
        """Set every group's lr for step `t`; returns the base lr."""
        self.t, self.lr = float(t), self.schedule(t)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * group.get("lr_mult", 1.0)
        return self.lr

    def state_dict(self) -> dict:
        return {"t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.set(state["t"])
