"""What an evaluation leaves behind and shows: metrics.json, confusion_matrix.csv, two PNGs, a rich table.

    runs/eval/<name>/
      metrics.json                      the run info + `SegMetrics.as_dict()` (NaN written as null)
      confusion_matrix.csv              pixel counts, rows = ground truth, columns = prediction
      confusion_matrix_normalized.png   each row divided by its ground-truth pixels (recall on the diagonal)
      per_class_iou.png                 one bar per class

Plots use matplotlib's Agg canvas directly (no pyplot state, no display needed).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.table import Table

from segkd.engine.metrics import SegMetrics
from segkd.outputs import atomic_path, atomic_write

ABSENT_NOTES = {
    "nan": "classes without pixels show '-' and are left out of the means",
    "zero": "undefined scores count as 0 and every class enters the means (FastSegFormer)",
}


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.2f}"


def metrics_table(metrics: SegMetrics, title: str | None = None) -> Table:
    """Per-class IoU / Acc / Precision / Dice in percent, then a 'mean' row; NaN shows as '-'."""
    table = Table(title=title, caption=f"absent={metrics.absent}: {ABSENT_NOTES[metrics.absent]}")
    for col in ("Class", "Pixels", "IoU", "Acc", "Precision", "Dice"):
        table.add_column(col, justify="left" if col == "Class" else "right")
    for i, name in enumerate(metrics.class_names):
        table.add_row(name, f"{int(metrics.pixels[i]):,}", *(_pct(a[i]) for a in
                      (metrics.iou, metrics.acc, metrics.precision, metrics.dice)))
    table.add_section()
    table.add_row("mean", f"{int(metrics.pixels.sum()):,}",
                  *(_pct(v) for v in (metrics.mIoU, metrics.mPA, metrics.mPrecision, metrics.mDice)), style="bold")
    return table


def summary_line(metrics: SegMetrics) -> str:
    """One line: every dataset-level score in percent."""
    return " · ".join(f"{k} {_pct(v)}" for k, v in metrics.summary().items())


def write_eval_report(metrics: SegMetrics, run_dir: str | Path, info: dict[str, Any] | None = None) -> list[Path]:
    """Write the four report files into `run_dir`; returns their paths."""
    paths = report_files(run_dir)
    with atomic_write(paths[0], "w") as f:
        f.write(json.dumps({**(info or {}), **metrics.as_dict()}, indent=2, allow_nan=False) + "\n")
    write_confusion_csv(metrics, paths[1])
    plot_confusion(metrics, paths[2])
    plot_class_iou(metrics, paths[3])
    return paths


def report_files(run_dir: str | Path) -> list[Path]:
    """The four files `write_eval_report` writes (what the output guard checks first)."""
    run_dir = Path(run_dir)
    return [run_dir / "metrics.json", run_dir / "confusion_matrix.csv", run_dir / "confusion_matrix_normalized.png",
            run_dir / "per_class_iou.png"]


def write_confusion_csv(metrics: SegMetrics, path: Path) -> None:
    with atomic_write(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["gt\\pred", *metrics.class_names])
        for name, row in zip(metrics.class_names, metrics.matrix):
            writer.writerow([name, *(int(v) for v in row)])


def plot_confusion(metrics: SegMetrics, path: Path) -> None:
    """Row-normalised confusion matrix (rows without pixels stay 0), values printed for up to 20 classes."""
    m = metrics.matrix.astype(np.float64)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    k = len(metrics.class_names)
    side = min(3 + 0.6 * k, 16)
    fig = Figure(figsize=(side, side * 0.85), dpi=100)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), metrics.class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), metrics.class_names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion matrix (row-normalised)")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    with atomic_path(path, durable=False) as tmp:
        FigureCanvasAgg(fig).print_png(str(tmp))


def plot_class_iou(metrics: SegMetrics, path: Path) -> None:
    """Horizontal IoU bars in percent with the mIoU line; classes without a score are marked n/a."""
    k = len(metrics.class_names)
    iou = np.nan_to_num(metrics.iou * 100, nan=0.0)
    fig = Figure(figsize=(7, 1.5 + 0.35 * k), dpi=100)
    ax = fig.add_subplot()
    ax.barh(range(k), iou, color="tab:blue")
    for i, v in enumerate(metrics.iou):
        ax.text(iou[i] + 1, i, "n/a" if math.isnan(v) else f"{100 * v:.1f}", va="center", fontsize=8)
    if not math.isnan(metrics.mIoU):
        ax.axvline(100 * metrics.mIoU, color="tab:red", linestyle="--", label=f"mIoU {100 * metrics.mIoU:.2f}")
        ax.legend(loc="lower right")
    ax.set_yticks(range(k), metrics.class_names)
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_xlabel("IoU (%)")
    ax.set_title("per-class IoU")
    fig.tight_layout()
    with atomic_path(path, durable=False) as tmp:
        FigureCanvasAgg(fig).print_png(str(tmp))
