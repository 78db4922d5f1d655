"""Exponential moving average of model weights, updated after every optimizer step.

    decay_t = min(train.ema_decay, 1 - 1/(t + 1))      t = updates done before this one

The ramp (PP-MobileSeg's, PaddleSeg `--use_ema`) makes the first update a plain copy and lets early averages
follow the fast-moving weights. Floating-point parameters and buffers (BN running stats) are averaged;
integer buffers (`num_batches_tracked`) are copied. The EMA copy is what validation and best.pt use.

The average's horizon scales with the run (`decay_for_run`): a decay whose time constant 1/(1 - decay) is longer
than a tenth of the run's optimizer steps is lowered to 1 - 10/steps, so a short run's EMA follows the weights
instead of averaging the whole run from its random start (0.9999 is a 10,000-step horizon; a 300-step run gets
0.967). Long runs keep the configured decay.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


#: the EMA's time constant is at most this share of the run's optimizer steps
HORIZON_SHARE = 0.1


def decay_for_run(decay: float, total_steps: int) -> float:
    """`decay`, or 1 - 1/(HORIZON_SHARE · total_steps) when its horizon is longer than that share of the run."""
    return min(decay, max(0.0, 1.0 - 1.0 / (HORIZON_SHARE * max(total_steps, 1))))


class ModelEMA:
    """A frozen, eval-mode copy of `model` whose weights trail the model's."""

    def __init__(self, model: nn.Module, decay: float = 0.9999):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    def decay_at(self, updates: int) -> float:
        return min(self.decay, 1.0 - 1.0 / (updates + 1))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.decay_at(self.updates)
        source = model.state_dict()
        for name, avg in self.module.state_dict().items():
            new = source[name].detach()
            if avg.dtype.is_floating_point:
                avg.lerp_(new.to(avg.dtype), 1.0 - d)  # avg = d·avg + (1-d)·new
            else:
                avg.copy_(new)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict, weights: dict[str, torch.Tensor]) -> None:
        """Restore the update count and the averaged weights (stored as the checkpoint's `model`)."""
        self.module.load_state_dict(weights)
        self.updates = int(state["updates"])
