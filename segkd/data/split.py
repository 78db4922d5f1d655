"""Split lists: train/val[/test] lists for a VOC or plain dataset, by ratio, seeded, optionally stratified.

Rules (they are also `segkd split --help`):
- **Pairs.** Every image with a mask of the same stem is split; images without masks and masks without
  images are reported and left out. Stems are sorted first, so the lists depend on the seed and the ratio
  only, never on file-system order.
- **Counts** follow the ratio by largest remainder: each split gets floor(n·share); the images left over go
  one each to the splits with the largest fractional remainders, ties to the earlier split (train, val, test).
  1448 pairs at 6:2:2 -> 869/290/289.
- **Random** (default): one `numpy` permutation of the sorted stems, cut by the counts. No file is opened.
- **Stratified** (`stratify=True`): reads every mask and spreads images by the classes they contain
  (iterative stratification): rarest class first, each of its images goes to a split that has none of that
  class yet, else to the split furthest below its share of that class; the counts stay exact.
- **Pixel shares** per class and split need mask reads: computed with `stratify` or up to
  `PIXEL_SHARE_LIMIT` pairs, otherwise left out (the report says why).
- **Writing.** Lists are `train`, `val`, `test` (three parts) and `trainval`, one stem per line, sorted, in
  `ImageSets/Segmentation/` (VOC) or `splits/` (plain). Existing lists are an error unless `force`; then each
  old list is first copied to `<name>.txt.bak` (or `.bak1`, `.bak2`, ... when taken), and a managed list this
  ratio does not produce (`test.txt` for a two-part ratio) is rewritten empty, so no stale stems remain.
  The lists pass the output guard first (`segkd.outputs.guard_outputs`, with the backups standing in for
  `--force` on lists segkd did not write) and are written atomically. No image or mask is ever moved, renamed
  or deleted.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from segkd.data.io import read_classes
from segkd.data.layouts import LIST_SPLITS, ListLayout, Sample, get_layout
from segkd.errors import DataError, SegkdError
from segkd.outputs import atomic_write, copy_aside, guard_outputs

SPLIT_NAMES = ("train", "val", "test")
PIXEL_SHARE_LIMIT = 2000  # pixel shares are computed without --stratify up to this many pairs
Progress = Callable[[Iterable, int], Iterator]  # (items, total) -> the same items, while showing progress


@dataclass
class SplitReport:
    """What `split_dataset` did: the lists, the files written, and per-class figures when masks were read."""

    root: Path
    format: str
    ratio: str
    seed: int
    stratify: bool
    lists: dict[str, list[str]]  # split -> sorted stems (train, val[, test])
    written: list[Path] = field(default_factory=list)
    backups: list[Path] = field(default_factory=list)
    images_only: list[str] = field(default_factory=list)  # image files without a mask
    masks_only: list[str] = field(default_factory=list)  # mask files without an image
    classes: list[str] = field(default_factory=list)
    pixels: dict[str, list[int]] | None = None  # split -> labelled pixels per class
    images_with: dict[str, list[int]] | None = None  # split -> images containing each class
    stats_note: str = ""  # why pixel figures are missing

    @property
    def pairs(self) -> int:
        return sum(len(v) for v in self.lists.values())

    def pixel_shares(self, split: str) -> list[float] | None:
        if self.pixels is None:
            return None
        px = self.pixels[split]
        total = sum(px)
        return [p / total if total else 0.0 for p in px]

    def absent(self) -> dict[str, list[str]]:
        """split -> classes with no pixel in it (only when masks were read, for non-empty splits)."""
        if self.images_with is None:
            return {}
        return {s: [c for c, n in zip(self.classes, counts) if n == 0]
                for s, counts in self.images_with.items() if self.lists[s]}

    def to_dict(self) -> dict:
        return {
            "root": str(self.root), "format": self.format, "ratio": self.ratio, "seed": self.seed,
            "stratify": self.stratify, "pairs": self.pairs, "counts": {s: len(v) for s, v in self.lists.items()},
            "classes": self.classes,
            "pixel_shares": {s: self.pixel_shares(s) for s in self.lists} if self.pixels else None,
            "images_with_class": self.images_with, "stats_note": self.stats_note or None,
            "absent_classes": self.absent(),
            "images_without_masks": {"count": len(self.images_only), "first": self.images_only[:10]},
            "masks_without_images": {"count": len(self.masks_only), "first": self.masks_only[:10]},
            "written": [str(p) for p in self.written], "backups": [str(p) for p in self.backups],
        }


def parse_ratio(text: str) -> tuple[Fraction, ...]:
    """`6:2:2`, `8:1:1`, `0.6:0.2:0.2` or two parts `7:3` (train:val) -> exact fractions."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise SegkdError(f"ratio '{text}': give 2 or 3 parts, train:val[:test], e.g. 6:2:2 or 7:3")
    values = []
    for part in parts:
        try:
            value = Fraction(part.strip())
        except (ValueError, ZeroDivisionError):
            raise SegkdError(f"ratio '{text}': '{part}' is not a number") from None
        if value < 0:
            raise SegkdError(f"ratio '{text}': '{part}' is negative")
        values.append(value)
    if sum(values) == 0:
        raise SegkdError(f"ratio '{text}': the parts sum to 0")
    return tuple(values)


def split_counts(n: int, ratio: tuple[Fraction, ...]) -> list[int]:
    """Images per split by largest remainder (ties to the earlier split); the counts sum to `n`."""
    total = sum(ratio)
    quotas = [Fraction(n) * r / total for r in ratio]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(ratio)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def random_assignment(n: int, counts: list[int], seed: int) -> list[np.ndarray]:
    """Indices 0..n-1 per split: one seeded permutation cut by `counts`."""
    order = np.random.default_rng(seed).permutation(n)
    return np.split(order, np.cumsum(counts)[:-1])


def stratified_assignment(present: np.ndarray, counts: list[int], seed: int) -> list[np.ndarray]:
    """Indices per split so each split holds each class in proportion (iterative stratification).

    present: N×K bool, which classes each image contains. Rarest class first; each of its images goes to a
    split with room that has none of the class yet, else the one furthest below its share of the class,
    ties to the one with the most room left. Images with no class fill the remaining room.
    """
    n = len(present)
    room = np.asarray(counts, np.int64)
    want = present.sum(0)[None, :] * (room[:, None] / max(n, 1))  # S×K wanted images per class
    have = np.zeros_like(want)
    split_of = np.full(n, -1)
    order = np.random.default_rng(seed).permutation(n)
    left = np.ones(n, bool)
    while left.any():
        per_class = present[left].sum(0)
        if per_class.any():
            cls = int(np.argmin(np.where(per_class > 0, per_class, n + 1)))
            todo = order[left[order] & present[order, cls]]
        else:
            cls, todo = None, order[left[order]]
        for i in todo:
            if cls is None:
                score = [(room[j],) for j in range(len(counts))]
            else:
                score = [(have[j, cls] == 0, want[j, cls] - have[j, cls], room[j]) for j in range(len(counts))]
            j = max((j for j in range(len(counts)) if room[j] > 0), key=lambda j: (score[j], -j))
            split_of[i], room[j] = j, room[j] - 1
            have[j] += present[i]
            left[i] = False
    return [np.flatnonzero(split_of == j) for j in range(len(counts))]


def class_pixels(
    layout: ListLayout, pairs: list[Sample], ignore_index: int = 255, progress: Progress | None = None
) -> np.ndarray:
    """N×K labelled pixels per image and class (K = highest label + 1, the ignore index left out)."""

    def count(sample: Sample) -> np.ndarray:
        hist = np.bincount(layout.load_mask(sample.mask, ignore_index).ravel(), minlength=ignore_index + 1)
        hist[ignore_index] = 0
        return hist[: np.flatnonzero(hist).max() + 1] if hist.any() else hist[:0]

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # decoding releases the GIL
        rows = pool.map(count, pairs)
        rows = list(progress(rows, len(pairs)) if progress else rows)
    k = max((len(r) for r in rows), default=0)
    table = np.zeros((len(rows), k), np.int64)
    for i, row in enumerate(rows):
        table[i, : len(row)] = row
    return table


def split_dataset(
    root: Path | str,
    ratio: str = "6:2:2",
    *,
    seed: int = 0,
    stratify: bool = False,
    force: bool = False,
    format: str = "auto",
    ignore_index: int = 255,
    progress: Progress | None = None,
) -> SplitReport:
    """Write train/val[/test]/trainval lists for the dataset at `root` (rules in this module's docstring)."""
    root = Path(root)
    parts = parse_ratio(ratio)
    layout = get_layout(root, format)
    if not isinstance(layout, ListLayout):
        raise DataError(f"{root}: {layout.name} splits are folders (leftImg8bit/<split>/); "
                        "segkd split writes lists only for VOC and plain layouts")
    scan = layout.scan(root)
    if not scan.stems:
        raise DataError(f"{root}: no image/mask pairs to split ({len(scan.images_only)} images without masks, "
                        f"{len(scan.masks_only)} masks without images)")
    list_dir = layout.list_dir(root)
    existing = [list_dir / f"{s}.txt" for s in LIST_SPLITS if (list_dir / f"{s}.txt").exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise DataError(f"{existing[0]}: split list exists{more}; use --force to replace the lists "
                        "(the old ones are kept as *.txt.bak)")
    guard_outputs([list_dir / f"{s}.txt" for s in LIST_SPLITS], [scan.image_dir, scan.mask_dir], force=force,
                  backed_up=True)
    n = len(scan.stems)
    counts = split_counts(n, parts)
    names = list(SPLIT_NAMES[: len(parts)])
    pixels, note = None, ""
    if stratify or n <= PIXEL_SHARE_LIMIT:
        pixels = class_pixels(layout, scan.pairs, ignore_index, progress)  # the only file reads
    else:
        note = f"pixel shares need mask reads: skipped for {n} pairs > {PIXEL_SHARE_LIMIT} without --stratify"
    if stratify:
        chosen = stratified_assignment(pixels > 0, counts, seed)
    else:
        chosen = random_assignment(n, counts, seed)
    lists = {name: sorted(scan.stems[i] for i in idx) for name, idx in zip(names, chosen)}
    report = SplitReport(root, layout.name, ratio, seed, stratify, lists, images_only=scan.images_only,
                         masks_only=scan.masks_only, stats_note=note)
    report.classes = class_names(root, layout, pixels.shape[1] if pixels is not None else 0)
    if pixels is not None:
        k = len(report.classes)
        padded = np.zeros((n, k), np.int64)
        padded[:, : pixels.shape[1]] = pixels
        report.pixels = {s: padded[idx].sum(0).tolist() for s, idx in zip(names, chosen)}
        report.images_with = {s: (padded[idx] > 0).sum(0).tolist() for s, idx in zip(names, chosen)}
    report.written, report.backups = write_split_lists(list_dir, lists)
    return report


def class_names(root: Path, layout: ListLayout, seen: int) -> list[str]:
    """Names from classes.txt (or the layout), extended with `class <k>` up to the highest label seen."""
    names = list(read_classes(root) or layout.default_classes or [])
    return names + [f"class {k}" for k in range(len(names), seen)]


def write_split_lists(list_dir: Path, lists: dict[str, list[str]]) -> tuple[list[Path], list[Path]]:
    """Write `<split>.txt` per list plus `trainval.txt`; back up and replace existing managed lists.

    Returns (written, backups). A managed list that `lists` does not produce is rewritten empty.
    """
    lists = dict(lists)
    lists["trainval"] = sorted(lists["train"] + lists["val"])
    written, backups = [], []
    for name in LIST_SPLITS:
        path = list_dir / f"{name}.txt"
        if name not in lists and not path.exists():
            continue
        if path.exists():
            backups.append(copy_aside(path))
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.write("".join(f"{s}\n" for s in lists.get(name, [])))
        written.append(path)
    return written, backups
