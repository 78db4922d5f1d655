"""Which student tap distils from which teacher tap: named pairs checked, `pairs: auto` resolved by stride.

Both models' taps are read before any weights exist: `probe_taps` builds the model on PyTorch's meta device (no
memory, no initialisation) and runs `tap_shapes` there, so a pair naming a tap a model lacks fails at once, listing
the taps it has (a family that cannot run on the meta device is probed on the CPU instead).

`pairs: auto` (a feature term written for any teacher):

    for each student tap but `logits`, in `forward_taps` order, the teacher tap (but `logits`) with the same
    output stride (input side / tap side, each model at its own input size); when several teacher taps share
    that stride, the deepest, i.e. the last in the teacher's `forward_taps` order (decoder after encoder).
    A student tap with no teacher tap at its stride is skipped and listed.

e.g. FastSegFormer-P (stage1-4 at 4/8/16/32, neck 32, fusion 8, detail 2) from Swin-T-Att-UNet (stage1-4,
bottle 32, a3 8, a1 2): stage1->stage1, stage2->a3, stage3->stage3, stage4->bottle, neck->bottle, fusion->a3,
detail->a1.
"""

from __future__ import annotations

import torch
from torch import nn

from segkd.errors import ConfigError
from segkd.models import build_model

Shapes = "OrderedDict[str, tuple[int, ...]]"
AUTO = "auto"


def probe_taps(model_cfg: dict, size: tuple[int, int]) -> tuple[Shapes, dict]:
    """(tap name -> shape for one image at `size`, the model's default cfg) of the model `model_cfg` describes."""
    try:
        with torch.device("meta"):
            return _probe(build_model(model_cfg), size)
    except (RuntimeError, NotImplementedError):  # a family that reads tensor values while it builds or runs
        return _probe(build_model(model_cfg), size)


def _probe(model: nn.Module, size: tuple[int, int]) -> tuple[Shapes, dict]:
    return model.tap_shapes(size), dict(getattr(model, "default_cfg", {}))


def stride(shape: tuple[int, ...], size: tuple[int, int]) -> tuple[int, int]:
    """Output stride of a B×C×h×w tap of a model fed `size` (H, W)."""
    return round(size[0] / shape[-2]), round(size[1] / shape[-1])


def auto_pairs(student: Shapes, student_size: tuple[int, int], teacher: Shapes,
               teacher_size: tuple[int, int]) -> tuple[list[tuple[str, str]], list[str]]:
    """(pairs by equal stride, student taps left without a partner); the rule is in the module docstring."""
    by_stride: dict[tuple[int, int], str] = {}
    for name, shape in teacher.items():
        if name != "logits" and len(shape) == 4:
            by_stride[stride(shape, teacher_size)] = name  # later = deeper: the last one wins
    pairs, skipped = [], []
    for name, shape in student.items():
        if name == "logits" or len(shape) != 4:
            continue
        match = by_stride.get(stride(shape, student_size))
        if match is None:
            skipped.append(name)
        else:
            pairs.append((name, match))
    return pairs, skipped


def check_tap(shapes: Shapes, tap: str, role: str, arch: str, index: int) -> tuple[int, ...]:
    """The shape of `tap`, or the error naming the taps `arch` has."""
    if tap not in shapes:
        raise ConfigError(
            f"distill.terms[{index}]: {role} tap '{tap}' does not exist in {arch} (available: {', '.join(shapes)})"
        )
    return shapes[tap]
