"""What the one Trainer needs from a distiller (`segkd.engine.distill.Distiller` provides it; see the Trainer's
docstring for when each member is called)."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn


class DistillerHooks(Protocol):
    """What the Trainer needs from a distiller (`segkd.engine.distill.Distiller` provides it)."""

    adapters: nn.Module  # trainable; saved in last.pt
    train_input_size: tuple[int, int]  # (H, W) of the train loader's images and labels

    def to(self, device: torch.device) -> Any: ...

    def student_input(self, images: Tensor) -> Tensor: ...  # B×3×H×W -> B×3×h×w (the student's size)

    def student_module(self, student: nn.Module) -> nn.Module: ...  # forward: x -> (logits, adapted)

    def __call__(self, images: Tensor, adapted: dict[str, list[Tensor]],
                 masks: Tensor | None = None) -> dict[str, Tensor]: ...  # weighted terms
