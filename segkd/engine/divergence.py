"""Non-finite training, caught cheaply: a bad step is skipped with a warning, `train.nan_patience` bad steps in a
row stop the run, and weights that are not finite are never saved.

- The loss terms are checked every step (their values are read for the progress bar anyway).
- Gradients are checked at every optimizer step through their total norm (one fused pass; the clipping norm
  when `train.clip_grad` is set). fp16 runs leave this to the GradScaler, which skips such steps itself.
- Weights are checked before every save: their float32 L2 norm must be finite, which also catches weights that
  blew up (|w| ≳ 1e19) without reaching inf.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from segkd.errors import JobFailed


def total_norm(tensors: Iterable[Tensor]) -> float:
    """The float32 L2 norm of all `tensors` together (inf/nan when any element is, or when it overflows)."""
    norms = [torch.linalg.vector_norm(t.detach().float()) for t in tensors if t is not None and t.numel()]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def first_nonfinite(module: nn.Module) -> str | None:
    """The name of the first parameter or float buffer whose float32 norm is not finite, else None."""
    tensors = dict(module.named_parameters()) | {n: b for n, b in module.named_buffers() if b.is_floating_point()}
    if math.isfinite(total_norm(tensors.values())):
        return None
    return next((name for name, t in tensors.items() if not math.isfinite(total_norm([t]))), "?")


class DivergenceGuard:
    """Counts consecutive non-finite steps; `warn` reports each skipped one, `patience` in a row fail the run."""

    def __init__(self, patience: int, warn: Callable[[str], None], advice: str = ""):
        self.patience, self.warn, self.advice = patience, warn, advice
        self.bad_in_a_row = 0
        self.skipped = 0

    def bad_loss(self, named: dict[str, float]) -> str | None:
        """`loss term 'x' is nan` for the first non-finite term, else None."""
        return next((f"loss term '{k}' is {v}" for k, v in named.items() if not math.isfinite(v)), None)

    def bad_grads(self, params: Iterable[Tensor], norm: float | None = None) -> str | None:
        """`gradient norm is inf` when the gradients are not finite, else None."""
        norm = total_norm(p.grad for p in params) if norm is None else float(norm)
        return None if math.isfinite(norm) else f"gradient norm is {norm}"

    def skip(self, what: str, where: str) -> None:
        """Record a skipped step; the `patience`-th in a row raises JobFailed."""
        self.bad_in_a_row += 1
        self.skipped += 1
        if self.bad_in_a_row >= self.patience:
            raise JobFailed(f"{what} at {where}, {self.bad_in_a_row} non-finite step(s) in a row "
                            f"(train.nan_patience={self.patience}): {self.advice}")
        self.warn(f"{what} at {where}: step skipped ({self.bad_in_a_row}/{self.patience} in a row)")

    def ok(self) -> None:
        self.bad_in_a_row = 0
