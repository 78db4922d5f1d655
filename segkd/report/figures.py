"""The report's figures as PNG bytes (matplotlib's Agg canvas: no display, no pyplot state).

- `training_curves`: train loss and val mIoU per epoch of each run (its results.csv)
- `fps_vs_miou`: the seed paper's headline figure, one point per model × backend (eager, ONNX fp32, ONNX int8)
- `overlay_grid`: test images, their labels and each model's prediction drawn over the photo, side by side
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from segkd.deploy.visualize import blend_arrays, colour_mask

MARKERS = {"eager": "o", "onnx": "s", "int8": "^"}
BACKEND_NAMES = {"eager": "eager", "onnx": "ONNX fp32", "int8": "ONNX int8"}


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def read_results(path: str | Path) -> list[dict]:
    """results.csv -> rows of floats (blank cells: None)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) if v not in ("", None) else None for k, v in row.items()} for row in csv.DictReader(f)]


def training_curves(runs: dict[str, str | Path]) -> bytes:
    """Two panels: train loss (sum of terms) and val mIoU (%) per epoch, one line per run (label -> results.csv)."""
    fig = Figure(figsize=(9, 3.4), dpi=100)
    loss_ax, miou_ax = fig.subplots(1, 2)
    for label, path in runs.items():
        rows = read_results(path)
        epochs = [r["epoch"] for r in rows]
        loss_ax.plot(epochs, [r.get("train/loss") for r in rows], marker=".", label=label)
        val = [(r["epoch"], 100 * r["val/mIoU"]) for r in rows if r.get("val/mIoU") is not None]
        miou_ax.plot([e for e, _ in val], [m for _, m in val], marker=".", label=label)
    loss_ax.set(xlabel="epoch", ylabel="train loss", title="training loss")
    miou_ax.set(xlabel="epoch", ylabel="val mIoU (%)", title="validation mIoU")
    for ax in (loss_ax, miou_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0.5, max(len(read_results(p)) for p in runs.values()) + 0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def fps_vs_miou(rows: list[dict]) -> bytes:
    """FPS (x, log scale) against test mIoU (y): one colour per model, one marker per backend."""
    fig = Figure(figsize=(6.5, 4.2), dpi=100)
    ax = fig.subplots()
    colours = {}
    for row in rows:
        for prefix, marker in MARKERS.items():
            fps = row.get(f"{prefix}_fps")
            if fps is None:
                continue
            colour = colours.setdefault(row["name"], f"C{len(colours)}")
            ax.scatter(fps, row["miou"], marker=marker, color=colour, s=60,
                       label=f"{row['model']} · {BACKEND_NAMES[prefix]}")
    ax.set_xscale("log")
    ax.set(xlabel="CPU FPS (batch 1, log scale)", ylabel="test mIoU (%)", title="speed vs accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return png_bytes(fig)


def _labels(path: str | Path) -> np.ndarray:
    """A palette PNG -> H×W class indices."""
    return np.asarray(Image.open(path))


def overlay_grid(images: list[str], masks: list[str], predictions: dict[str, list[str]],
                 palette: list[list[int]], alpha: float = 0.7) -> bytes:
    """Rows: test images. Columns: the photo, its label, then each model's prediction over the photo."""
    columns = ["image", "label", *predictions]
    fig = Figure(figsize=(2.1 * len(columns), 2.1 * len(images) + 0.3), dpi=100)
    axes = np.asarray(fig.subplots(len(images), len(columns), squeeze=False))
    for i, (image_path, mask_path) in enumerate(zip(images, masks)):
        photo = np.asarray(Image.open(image_path).convert("RGB"))
        tiles = [photo, blend_arrays(photo, colour_mask(_labels(mask_path), palette), alpha)]
        tiles += [blend_arrays(photo, colour_mask(_labels(p[i]), palette), alpha) for p in predictions.values()]
        for j, tile in enumerate(tiles):
            ax = axes[i, j]
            ax.imshow(tile)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(columns[j], fontsize=9)
    fig.tight_layout(pad=0.4)
    return png_bytes(fig)
