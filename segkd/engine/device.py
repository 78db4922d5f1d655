"""Where training runs: device selection, mixed precision, and which process writes files.

- `select_device("auto" | "cpu" | "cuda" | "cuda:N")`: auto picks CUDA when present.
- `Precision.for_device(device, amp)`: fp16 autocast + a GradScaler on CUDA, bf16 autocast on CPU, or plain fp32.
- `is_main_process()`: the one rank that writes run files (checkpoints, results.csv, plots): rank 0 under
  torchrun (`segkd.engine.distributed`), else the only process.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from segkd.errors import ConfigError


def select_device(spec: str = "auto") -> torch.device:
    """`train.device` as a torch device; a CUDA device that is not there fails naming the key."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"train.device='{spec}' is not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device='{spec}' but CUDA is not available (use train.device=cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"train.device='{spec}' but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type != "cpu":
        raise ConfigError(f"train.device='{spec}' is not supported (auto, cpu, cuda, cuda:N)")
    return device


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None = fp32) and whether a GradScaler guards fp16 gradients."""

    device_type: str
    dtype: torch.dtype | None
    scaled: bool

    @classmethod
    def for_device(cls, device: torch.device, amp: bool) -> "Precision":
        if not amp:
            return cls(device.type, None, False)
        if device.type == "cuda":
            return cls("cuda", torch.float16, True)
        return cls(device.type, torch.bfloat16, False)

    @property
    def name(self) -> str:
        return {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context for forward passes and losses (a no-op in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only for fp16 (elsewhere it passes gradients through unchanged)."""
        return torch.amp.GradScaler(self.device_type if self.scaled else "cpu", enabled=self.scaled)


def is_main_process() -> bool:
    """True in the process that writes run files: rank 0 (torchrun's RANK until the group exists), or the only one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside `torch.distributed`."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
