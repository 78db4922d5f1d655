"""What `segkd augment` did: images per split before/after, class pixel shares before/after, skipped pairs;
and the rewritten split lists (each copy right after its source, in every list that holds the source)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segkd.data.io import read_class_file

if TYPE_CHECKING:
    from segkd.data.augment_plan import AugmentPlan
    from segkd.data.augment_recipes import Recipe


@dataclass
class PairResult:
    """One pair of the chosen split: label counts (256 bins) of the source and of its copies, or why skipped."""

    stem: str
    before: np.ndarray | None = None
    copies: np.ndarray | None = None
    skipped: str = ""  # one line naming the file, when the pair was left out


@dataclass
class AugmentReport:
    source: Path
    out: Path
    format: str
    recipe: str
    ops: list[str]
    split: str
    times: int
    seed: int
    workers: int
    images: dict[str, tuple[int, int]]  # split -> (before, after)
    classes: list[str]
    pixels_before: list[int]  # labelled pixels per class in the chosen split (ignore index left out)
    pixels_after: list[int]
    results: list[PairResult] = field(default_factory=list, repr=False)
    preview: Path | None = None
    seconds: float = 0.0

    @property
    def skipped(self) -> list[str]:
        return [r.skipped for r in self.results if r.skipped]

    @staticmethod
    def shares(pixels: list[int]) -> list[float]:
        total = sum(pixels)
        return [p / total if total else 0.0 for p in pixels]

    @classmethod
    def build(cls, plan: AugmentPlan, recipe: Recipe, seed: int, workers: int,
              results: list[PairResult]) -> AugmentReport:
        done = [r for r in results if not r.skipped]
        before = sum((r.before for r in done), np.zeros(256, np.int64))
        after = before + sum((r.copies for r in done), np.zeros(256, np.int64))
        before[recipe.ignore_index] = after[recipe.ignore_index] = 0
        names = (read_class_file(plan.root) or (plan.layout.default_classes, None))[0]
        used = np.flatnonzero(after)
        n = max(len(names or []), int(used[-1]) + 1 if used.size else 0)
        classes = [names[i] if names and i < len(names) else f"class {i}" for i in range(n)]
        chosen, skipped = {r.stem for r in done}, {r.stem for r in results if r.skipped}
        images = {}
        for name, stems in plan.split_stems.items():
            kept = [s for s in stems if s not in skipped]
            images[name] = (len(stems), len(kept) + plan.times * sum(s in chosen for s in kept))
        return cls(plan.root, plan.out, plan.layout.name, recipe.name, [o.get("op", "?") for o in recipe.ops],
                   plan.split, plan.times, seed, workers, images, classes, before[:n].tolist(),
                   after[:n].tolist(), results)

    def to_dict(self) -> dict:
        return {
            "source": str(self.source), "out": str(self.out), "format": self.format, "recipe": self.recipe,
            "ops": self.ops, "split": self.split, "times": self.times, "seed": self.seed, "workers": self.workers,
            "images": {s: {"before": b, "after": a} for s, (b, a) in self.images.items()},
            "classes": self.classes,
            "pixel_shares": {"before": self.shares(self.pixels_before), "after": self.shares(self.pixels_after)},
            "skipped": self.skipped, "preview": str(self.preview) if self.preview else None,
            "seconds": round(self.seconds, 3),
        }

    def marker(self) -> dict:
        """The `--out` folder's record of how it was made (no times or worker counts: byte-identical reruns)."""
        doc = self.to_dict()
        return {"written_by": "segkd augment"} | {k: doc[k] for k in (
            "source", "format", "recipe", "ops", "split", "times", "seed", "images", "skipped")}


def list_texts(lists: Path, split_stems: dict[str, list[str]], copies: dict[str, list[str]],
               chosen: set[str]) -> dict[str, bytes]:
    """Each split list's new bytes: unchanged (byte for byte) when it holds no stem of the chosen split, else
    every chosen stem followed by its copies, skipped stems dropped, other lines as they were."""
    texts = {}
    for name in split_stems:
        raw = (lists / f"{name}.txt").read_bytes()
        lines = raw.decode("utf-8").splitlines(keepends=True)
        if not any(line.split() and line.split()[0] in chosen for line in lines):
            texts[name] = raw
            continue
        new = []
        for line in lines:
            stem = line.split()[0] if line.split() else None
            if stem not in chosen:
                new.append(line)
            elif stem in copies:
                new += [f"{s}\n" for s in [stem, *copies[stem]]]
        texts[name] = "".join(new).encode("utf-8")
    return texts
