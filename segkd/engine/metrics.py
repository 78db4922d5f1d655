"""Segmentation metrics from one global confusion matrix (accumulated over the whole split, as FastSegFormer).

Rows are ground truth, columns prediction. Per class c, with tp = M[c,c], gt = Σ_j M[c,j], pred = Σ_i M[i,c]:
    IoU = tp / (gt + pred − tp)     Acc (= recall, PA) = tp / gt     Precision = tp / pred
    Dice (= F1) = 2tp / (gt + pred)  aAcc = Σ tp / Σ M                 fwIoU = Σ_c (gt_c / Σ M) · IoU_c

Absent classes (`absent=`):
- "nan" (default): a score whose denominator is 0 is undefined and reported as NaN. A class with no ground-truth
  pixels has NaN Acc; if it was also never predicted (absent from both), its IoU, Dice and Precision are NaN
  too, while a class predicted but not present scores IoU = Dice = Precision = 0 (its false positives count).
  The means (mIoU, mPA, mPrecision, mDice) are `nanmean`s over the classes where the score is defined.
- "zero": FastSegFormer's convention: every denominator is guarded with max(·, 1), so undefined scores are 0,
  and the means run over all classes, background included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

ABSENT_MODES = ("nan", "zero")


class ConfusionMatrix:
    """K×K int64 pixel counts, rows = ground truth, columns = prediction; mergeable across workers/ranks."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, ignore_index: int = 255) -> "ConfusionMatrix":
        matrix = np.asarray(matrix, np.int64)
        cm = cls(matrix.shape[0], ignore_index)
        cm.matrix = matrix.copy()
        return cm

    def update(self, pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> "ConfusionMatrix":
        """Count one prediction against its label (same shape, any shape). Labels equal to `ignore_index` or
        outside [0, K) are dropped; a prediction outside [0, K) is an error."""
        k = self.num_classes
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(f"prediction shape {tuple(pred.shape)} != label shape {tuple(target.shape)}")
        pred = _flat_long(pred)
        target = _flat_long(target).to(pred.device)  # counted where the prediction lives (GPU or CPU)
        keep = (target != self.ignore_index) & (target >= 0) & (target < k)
        pred, target = pred[keep], target[keep]
        if pred.numel() and (pred.min() < 0 or pred.max() >= k):
            raise ValueError(f"predictions must lie in [0, {k}), got {pred.min().item()}..{pred.max().item()}")
        self.matrix += torch.bincount(target * k + pred, minlength=k * k).cpu().numpy().reshape(k, k)
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix of the same classes in place (e.g. after an all-reduce across ranks)."""
        if other.matrix.shape != self.matrix.shape:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one")
        self.matrix += other.matrix
        return self

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        return ConfusionMatrix.from_matrix(self.matrix, self.ignore_index).merge(other)

    def reset(self) -> None:
        self.matrix[:] = 0

    def compute(self, absent: str = "nan", class_names: list[str] | None = None) -> "SegMetrics":
        """All metrics (see the module docstring for how `absent` classes count)."""
        if absent not in ABSENT_MODES:
            raise ValueError(f"absent={absent!r}: expected one of {', '.join(ABSENT_MODES)}")
        m = self.matrix.astype(np.float64)
        tp, gt, pred = np.diag(m), m.sum(1), m.sum(0)
        total = m.sum()
        div = _nan_div if absent == "nan" else _guarded_div
        iou = div(tp, gt + pred - tp)
        acc = div(tp, gt)
        precision = div(tp, pred)
        dice = div(2 * tp, gt + pred)
        mean = _nanmean if absent == "nan" else _mean
        k = self.num_classes
        names = list(class_names) if class_names and len(class_names) == k else [f"class{i}" for i in range(k)]
        return SegMetrics(
            aAcc=float(div(np.array([tp.sum()]), np.array([total]))[0]),
            mIoU=mean(iou),
            mPA=mean(acc),
            mPrecision=mean(precision),
            mDice=mean(dice),
            fwIoU=float(div(np.array([(gt * np.nan_to_num(iou)).sum()]), np.array([total]))[0]),
            iou=iou,
            acc=acc,
            precision=precision,
            dice=dice,
            pixels=gt.astype(np.int64),
            class_names=names,
            absent=absent,
            matrix=self.matrix.copy(),
        )


def _flat_long(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.long().flatten()
    return torch.from_numpy(np.asarray(x).astype(np.int64).ravel())


def _nan_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _guarded_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return num / np.maximum(den, 1)


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else 0.0


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


@dataclass
class SegMetrics:
    """Dataset-level scores (fractions in [0, 1]) plus per-class arrays in class order."""

    aAcc: float
    mIoU: float
    mPA: float  # mean per-class accuracy = mean recall (MMSeg's mAcc)
    mPrecision: float
    mDice: float  # = mean F1
    fwIoU: float
    iou: np.ndarray
    acc: np.ndarray
    precision: np.ndarray
    dice: np.ndarray
    pixels: np.ndarray  # ground-truth pixels per class
    class_names: list[str]
    absent: str = "nan"
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))

    SUMMARY_KEYS = ("aAcc", "mIoU", "mPA", "mPrecision", "mDice", "fwIoU")

    def summary(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.SUMMARY_KEYS}

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: NaN becomes None (null)."""
        per_class = {
            name: {
                "IoU": _num(self.iou[i]),
                "Acc": _num(self.acc[i]),
                "Precision": _num(self.precision[i]),
                "Dice": _num(self.dice[i]),
                "pixels": int(self.pixels[i]),
            }
            for i, name in enumerate(self.class_names)
        }
        return {
            **{k: _num(v) for k, v in self.summary().items()},
            "absent": self.absent,
            "num_classes": len(self.class_names),
            "num_pixels": int(self.matrix.sum()),
            "per_class": per_class,
        }


def _num(x: float) -> float | None:
    x = float(x)
    return None if x != x else x
