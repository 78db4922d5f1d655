"""A run's plan, printed before its first step: epochs, the lr at warm-up end / peak / tail, the frozen epochs.

    plan: 20 epochs × 15 steps · lr 1e-05 → 0.0001 at epoch 0.06 (warm-up end), peak 0.0001 at epoch 1,
          0.0001 → 1e-06 (cosine), 1e-06 for the last 0.3 epochs · backbone frozen in epoch 1

With train.ema it names the EMA decay the run uses (scaled to the run: `segkd.engine.ema.decay_for_run`).
It also holds the rule that a random backbone is never frozen (`backbone_loaded`) and the warnings a short
run needs: the configured train.lr is never reached, or the backbone is frozen for more than half the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from segkd.config import Config, ModelConfig
from segkd.engine.ema import decay_for_run
from segkd.engine.schedulers import LRSchedule

#: the peak must come this close to train.lr to count as reaching it
REACHED = 0.99


def backbone_loaded(model: ModelConfig) -> bool:
    """Whether the model starts from loaded weights, which is the only case where freezing its backbone helps.

    Loaded means `model.weights` (whole-model weights), `model.backbone_weights` or `model.pretrained` (or the
    same two in `model.options`).
    """
    options = model.options or {}
    return bool(model.weights or model.backbone_weights or model.pretrained
                or options.get("backbone_weights") or options.get("pretrained"))


@dataclass(frozen=True)
class RunPlan:
    """What the schedule and the freeze will do over the whole run, computed before it starts."""

    epochs: int
    steps_per_epoch: int  # optimizer steps per epoch
    schedule: LRSchedule
    per_iter: bool  # the schedule advances per optimizer step (else per epoch)
    lr: float  # train.lr
    freeze_epochs: int  # the backbone is frozen in epochs 1..freeze_epochs
    skipped_freeze: int = 0  # configured freeze epochs dropped because the backbone is random
    ema_decay: float | None = None  # train.ema_decay when EMA is on
    run_ema_decay: float | None = None  # the decay this run uses (`decay_for_run`)

    @classmethod
    def from_config(cls, cfg: Config, schedule: LRSchedule, steps_per_epoch: int, freeze_epochs: int) -> "RunPlan":
        loaded, tcfg = backbone_loaded(cfg.model), cfg.train
        ema = tcfg.ema_decay if tcfg.ema else None
        run_ema = decay_for_run(ema, tcfg.epochs * steps_per_epoch) if ema is not None else None
        return cls(tcfg.epochs, steps_per_epoch, schedule, tcfg.sched_step == "iter", tcfg.lr,
                   freeze_epochs if loaded else 0, 0 if loaded else freeze_epochs, ema, run_ema)

    @property
    def per_epoch(self) -> int:
        """Scheduler steps per epoch."""
        return self.steps_per_epoch if self.per_iter else 1

    def lrs(self) -> list[float]:
        """The base lr at every scheduler step the run takes."""
        return [self.schedule(t) for t in range(self.epochs * self.per_epoch)]

    def _epoch(self, t: float) -> str:
        return f"{t / self.per_epoch:.3g}"

    def line(self) -> str:
        s, lrs = self.schedule, self.lrs()
        peak = max(lrs)
        parts = [f"plan: {self.epochs} epochs × {self.steps_per_epoch} steps, {s.kind} per "
                 f"{'step' if self.per_iter else 'epoch'}"]
        if s.kind == "constant":
            parts.append(f"lr {s.lr:.3g} throughout")
        else:
            if s.warmup > 0:
                parts.append(f"lr {lrs[0]:.3g} → {s(s.warmup):.3g} at epoch {self._epoch(s.warmup)} (warm-up end)")
            at = lrs.index(peak)
            parts.append(f"peak {peak:.3g} at epoch {self._epoch(at)}, last {lrs[-1]:.3g}")
            if s.kind == "warm_cosine" and s.min_lr_steps > 0:
                parts.append(f"{s.min_lr:.3g} for the last {self._epoch(s.min_lr_steps)} epochs")
        if self.freeze_epochs:
            parts.append(f"backbone frozen in epochs 1-{self.freeze_epochs}")
        if self.run_ema_decay is not None:
            parts.append(f"EMA decay {self.run_ema_decay:.4g}")
        return " · ".join(parts)

    def messages(self) -> list[str]:
        """Notes and warnings to print under the plan (rich markup), one line each."""
        out = []
        if self.skipped_freeze:
            out.append(f"note: train.freeze_epochs={self.skipped_freeze} skipped: the backbone is random (freezing "
                       "applies to loaded weights: model.backbone_weights=FILE or model.weights=FILE)")
        peak = max(self.lrs())
        if self.schedule.kind != "constant" and peak < REACHED * self.lr:
            coarse = not self.per_iter and self.schedule.warmup < 1  # a warm-up inside the first epoch
            fix = "step it per iteration: train.sched_step=iter" if coarse else "shorten train.warmup_epochs"
            out.append(f"[yellow]warning:[/] train.lr={self.lr:g} is never reached: this run peaks at {peak:.3g} "
                       f"(warm-up {self._epoch(self.schedule.warmup)} of {self.epochs} epochs, {self.schedule.kind} per "
                       f"{'step' if self.per_iter else 'epoch'}: {fix})")
        if self.run_ema_decay is not None and self.run_ema_decay < self.ema_decay:
            out.append(f"note: train.ema_decay {self.ema_decay:g} -> {self.run_ema_decay:.4g} for this run (its "
                       f"horizon of {1 / (1 - self.ema_decay):.0f} steps is longer than a tenth of the run's "
                       f"{self.epochs * self.steps_per_epoch} steps)")
        if self.freeze_epochs > self.epochs / 2:
            out.append(f"[yellow]warning:[/] the backbone is frozen for {self.freeze_epochs} of {self.epochs} epochs, "
                       "more than half the run (lower train.freeze_epochs)")
        return out
