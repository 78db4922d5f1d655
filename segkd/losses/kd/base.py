"""What every KD loss shares: pairs of (student, teacher) tensors in, one finite scalar out.

A KD term pairs one or more student taps with teacher taps. The Distiller builds one adapter per pair with
`loss.build_adapter(student_shape, teacher_shape)` (kinds in `segkd.losses.kd.adapters`), applies it to the
student tensor and calls `loss(students, teachers)` with the adapted student tensors. Before `pair_loss` sees
a pair, both tensors are turned into maps (`B×N×C` tokens of a square grid become `B×C×√N×√N`) and the
teacher is bilinearly resized to the student's spatial size, so any teacher works with any student.

A term that needs the batch's labels (BPKD's edges, CIRKD's class regions) sets `label_source`; the Distiller
then calls `loss(students, teachers, labels=B×H×W)` and `pair_loss(student, teacher, labels)` gets them
nearest-resized to the pair's spatial size (`labels_at`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segkd.errors import ConfigError, JobFailed
from segkd.losses.kd.adapters import build_adapter, channels_of
from segkd.losses.resize import resize_to

Shape = Sequence[int]


def check_finite(value: Tensor, term: str) -> Tensor:
    """`value` itself, or JobFailed naming the term when it is NaN or infinite."""
    if not bool(torch.isfinite(value).all()):
        raise JobFailed(
            f"KD term '{term}' is {value.detach().flatten()[0].item()}: the student or teacher produced "
            "NaN/Inf (lower train.lr, or check the teacher weights)"
        )
    return value


def tokens_to_map(x: Tensor) -> Tensor:
    """B×N×C tokens of a square grid -> B×C×√N×√N; maps (B×C×H×W) pass through."""
    if x.ndim == 4:
        return x
    if x.ndim != 3:
        raise ConfigError(f"a KD tap must be B×C×H×W or B×N×C, got shape {tuple(x.shape)}")
    b, n, c = x.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ConfigError(f"token tap of shape {tuple(x.shape)}: {n} tokens are not a square grid")
    return x.transpose(1, 2).reshape(b, c, side, side)


def labels_at(labels: Tensor, size: Sequence[int]) -> Tensor:
    """B×H×W class labels -> B×h×w (nearest neighbour, as the labels of a strided feature map); long."""
    size = tuple(int(s) for s in size[-2:])
    if tuple(labels.shape[-2:]) != size:
        labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0]
    return labels.long()


class KDLoss(nn.Module):
    """Base of the KD losses. Subclasses implement `pair_loss(student, teacher)` on B×C×H×W maps.

    Class attributes a subclass sets:
      adapter         kind of adapter built per pair (see `adapters.build_adapter`)
      same_channels   the adapted student and the teacher must have the same channel count
      pair_reduction  how the pairs of one term combine: "sum", "mean" or "last" (only the last pair counts)
      align_corners   of the bilinear resize that brings the teacher to the student's size
      label_source    None (the default: no labels), "masks" (the batch's ground truth) or "teacher" (the
                      teacher's argmax prediction); with one set, `pair_loss` also gets the labels (B×h×w)
    """

    adapter: str = "none"
    same_channels: bool = True
    pair_reduction: str = "sum"
    align_corners: bool = False
    label_source: str | None = None
    #: the name errors use; the Distiller sets it to the term's results.csv column
    term: str = ""

    def pair_loss(self, student: Tensor, teacher: Tensor, labels: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def build_adapter(self, student_shape: Shape, teacher_shape: Shape) -> nn.Module:
        """The module that maps the student tap to the teacher's width (Identity when none is needed)."""
        adapter = build_adapter(self.adapter, student_shape, teacher_shape, **self.adapter_options())
        if self.same_channels:
            out_channels = adapted_channels(adapter, student_shape)
            if out_channels != channels_of(teacher_shape):
                raise ConfigError(
                    f"KD term '{self.name()}': student tap has {channels_of(student_shape)} channels and teacher tap "
                    f"{channels_of(teacher_shape)}; '{type(self).__name__}' needs equal channels "
                    "(pair logits of models with the same number of classes, or use a loss with an adapter)"
                )
        return adapter

    def adapter_options(self) -> dict:
        """Keyword arguments of `build_adapter` (e.g. the SEKD FEF mid width)."""
        return {}

    def name(self) -> str:
        return self.term or type(self).__name__

    def forward(self, student: Tensor | Sequence[Tensor], teacher: Tensor | Sequence[Tensor],
                labels: Tensor | None = None) -> Tensor:
        """The term's value; `labels` (B×H×W, any size) are required when `label_source` is set."""
        if self.label_source is not None and labels is None:
            raise ValueError(f"KD term '{self.name()}' needs the batch's labels ({self.label_source})")
        students = [student] if isinstance(student, Tensor) else list(student)
        teachers = [teacher] if isinstance(teacher, Tensor) else list(teacher)
        if len(students) != len(teachers) or not students:
            raise ValueError(f"{self.name()}: {len(students)} student and {len(teachers)} teacher tensors")
        if self.pair_reduction == "last":
            students, teachers = students[-1:], teachers[-1:]
        if self.label_source is None:
            losses = [self.pair_loss(*self.match(s, t)) for s, t in zip(students, teachers)]
        else:
            pairs = [self.match(s, t) for s, t in zip(students, teachers)]
            losses = [self.pair_loss(s, t, labels_at(labels, s.shape[-2:])) for s, t in pairs]
        total = torch.stack(losses).sum() if self.pair_reduction != "mean" else torch.stack(losses).mean()
        return check_finite(total, self.name())

    def match(self, student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        """Both as float32 maps, the teacher (no gradient) resized to the student's spatial size."""
        student, teacher = tokens_to_map(student).float(), tokens_to_map(teacher.detach()).float()
        if teacher.shape[-2:] != student.shape[-2:]:
            teacher = resize_to(teacher, student.shape[-2:], align_corners=self.align_corners)
        return student, teacher


@torch.no_grad()
def adapted_channels(adapter: nn.Module, shape: Shape) -> int:
    """Channels `adapter` gives a student tensor of `shape` (probed on one 1×1 sample in eval mode)."""
    probe = torch.zeros(1, shape[1], 1, 1) if len(shape) == 4 else torch.zeros(1, 1, shape[-1])
    was_training = adapter.training
    adapter.eval()
    out = adapter(probe)
    adapter.train(was_training)
    return channels_of(out.shape)
