"""What a run records per epoch: results.csv, plots/*.png curves, optional TensorBoard scalars.

results.csv has one row per epoch and these columns:
    epoch, lr, train/<term>... (each loss term, KD terms included), train/loss (their sum),
    val/mIoU, val/aAcc, val/mPA, val/mPrecision, val/mDice, val/fwIoU (fractions in [0, 1]; blank on epochs
    without validation), time (wall seconds of the epoch's training and validation), elapsed (wall seconds of
    training so far, saving included, across resumes: what `train.time` budgets)
Plots are drawn with matplotlib's Agg canvas (no display, no pyplot state).
"""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from segkd.outputs import atomic_path, atomic_write, make_dirs

#: SegMetrics summary keys recorded as val/<key>
VAL_KEYS = ("mIoU", "aAcc", "mPA", "mPrecision", "mDice", "fwIoU")


def result_columns(terms: list[str]) -> list[str]:
    """The CSV header for a run whose loss has `terms` (e.g. ['ce'] or ['ce', 'nfd', 'pkl'])."""
    return ["epoch", "lr", *(f"train/{t}" for t in terms), "train/loss", *(f"val/{k}" for k in VAL_KEYS), "time",
            "elapsed"]


class ResultsCSV:
    """results.csv: the header comes from the first row's loss terms; rows past a resumed epoch are dropped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def columns(self) -> list[str]:
        with open(self.path, newline="") as f:
            return next(csv.reader(f))

    def append(self, row: dict[str, Any]) -> None:
        """Add a row: the whole file is rewritten atomically (a crash never leaves a half row)."""
        new = not self.path.exists()
        terms = [k[len("train/"):] for k in row if k.startswith("train/") and k != "train/loss"]
        columns = result_columns(terms) if new else self.columns
        old = "" if new else self.path.read_text()
        with atomic_write(self.path, "w", newline="") as f:
            f.write(old)
            writer = csv.DictWriter(f, fieldnames=columns)
            if new:
                writer.writeheader()
            writer.writerow({k: _cell(row.get(k)) for k in columns})

    def rows(self) -> list[dict[str, float | None]]:
        """Every row, numbers as floats and blanks as None."""
        if not self.path.exists():
            return []
        with open(self.path, newline="") as f:
            return [{k: float(v) if v not in ("", None) else None for k, v in r.items()} for r in csv.DictReader(f)]

    def keep_until(self, epoch: int) -> None:
        """Drop rows after `epoch` (a resumed run repeats them), rewriting the file atomically."""
        if not self.path.exists():
            return
        columns = self.columns
        rows = [r for r in self.rows() if r["epoch"] is not None and r["epoch"] <= epoch]
        with atomic_write(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: _cell(int(r[k]) if k == "epoch" else r.get(k)) for k in columns})


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def plot_results(rows: list[dict[str, float | None]], out_dir: str | Path) -> list[Path]:
    """loss.png (train terms), metrics.png (val mIoU/aAcc/mPA) and lr.png against epoch."""
    out_dir = make_dirs(out_dir)
    if not rows:
        return []
    columns = list(rows[0])
    panels = {
        "loss.png": ("training loss", [c for c in columns if c.startswith("train/")]),
        "metrics.png": ("validation", [c for c in columns if c.startswith("val/")]),
        "lr.png": ("learning rate", ["lr"]),
    }
    written = []
    for filename, (title, series) in panels.items():
        fig = Figure(figsize=(6, 4), dpi=100)
        ax = fig.subplots()
        for name in series:
            points = [(r["epoch"], r[name]) for r in rows if r.get(name) is not None]
            if points:
                ax.plot(*zip(*points), marker="." if len(points) < 50 else None, label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if series and ax.lines:
            ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_path(out_dir / filename, durable=False) as tmp:
            fig.savefig(tmp)
        written.append(out_dir / filename)
    return written


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


class TensorBoardLogger:
    """Scalars of every results row under `log_dir` (only when the tensorboard package is installed)."""

    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter  # optional dependency, imported only when asked for

        self.writer = SummaryWriter(str(log_dir))

    def log(self, row: dict[str, Any]) -> None:
        step = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not math.isnan(value):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
