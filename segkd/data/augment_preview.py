"""`--preview`: one PNG grid, a row per source pair: the original, then its copies, masks overlaid."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from segkd.data.io import read_class_file, read_image
from segkd.data.palette import colorize, default_palette
from segkd.outputs import atomic_path

if TYPE_CHECKING:
    from segkd.data.augment_plan import AugmentPlan
    from segkd.data.augment_recipes import Recipe
    from segkd.data.augment_report import PairResult

PREVIEW_FILE = "augment_preview.png"
ROWS, COLUMNS, TILE_H, GAP = 4, 4, 192, 4  # source pairs, tiles per row (original + copies), tile height, px


def overlay(image: np.ndarray, mask: np.ndarray, palette: list[list[int]], ignore_index: int) -> np.ndarray:
    """The image with class colours blended at 50% where the mask is labelled (background and ignore clear)."""
    colours = colorize(mask, palette, ignore_index)
    labelled = ((mask != 0) & (mask != ignore_index))[..., None]
    return np.where(labelled, (image.astype(np.uint16) + colours) // 2, image).astype(np.uint8)


def write_preview(stage: Path, plan: AugmentPlan, results: list[PairResult], recipe: Recipe) -> Path:
    """Write the grid into `stage` from the files just written there; returns its path."""
    palette = (read_class_file(plan.root) or (None, None))[1] or plan.layout.default_palette or default_palette(256)
    done = {r.stem for r in results if not r.skipped}
    rows = []
    for job in [j for j in plan.jobs if j.stem in done][:ROWS]:
        pairs = [(job.image_rel, job.mask_rel), *job.copies][:COLUMNS]
        tiles = []
        for image_rel, mask_rel in pairs:
            image = read_image(stage / image_rel)
            mask = plan.layout.load_mask(stage / mask_rel, recipe.ignore_index)
            tiles.append(_thumb(overlay(image, mask, palette, recipe.ignore_index)))
        rows.append(_hstack(tiles))
    grid = _vstack(rows) if rows else np.full((TILE_H, TILE_H, 3), 255, np.uint8)
    path = stage / PREVIEW_FILE
    with atomic_path(path, durable=False) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return path


def _thumb(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, round(w * TILE_H / h)), TILE_H), interpolation=cv2.INTER_AREA)


def _hstack(tiles: list[np.ndarray]) -> np.ndarray:
    gap = np.full((TILE_H, GAP, 3), 255, np.uint8)
    return np.hstack([t for tile in tiles for t in (tile, gap)][:-1])


def _vstack(rows: list[np.ndarray]) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, GAP), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.vstack(padded)[:-GAP]
