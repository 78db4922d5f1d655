"""Tiny dataset trees (VOC, plain, Cityscapes) and a tree digest to prove that nothing in a tree changed.

Tests get the helpers through the `trees` fixture (conftest is not importable under --import-mode=importlib);
tests/commands/ loads this file by path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from segkd.data.io import write_mask
from segkd.data.palette import voc_palette

SIZE = (6, 8)  # H, W of every tiny image


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (folders as 'dir'): equal digests mean an untouched tree."""
    return {p.relative_to(root).as_posix(): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def write_image(path: Path, seed: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A random RGB PNG (lossless, so tests can compare pixels); returns the RGB array."""
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def class_mask(index: int, size: tuple[int, int] = SIZE, classes: tuple[int, ...] = (0, 1)) -> np.ndarray:
    """A mask holding exactly `classes` (in bands), varying with `index`."""
    mask = np.full(size, classes[0], np.uint8)
    for j, c in enumerate(classes[1:], 1):
        mask[(index + j) % size[0]] = c
    return mask


def make_voc(root: Path, n: int = 6, palette: bool = True, masks: dict[int, np.ndarray] | None = None,
             order: list[int] | None = None, ext: str = ".jpg") -> Path:
    """VOC tree with `n` pairs `img_000..`; palette PNG masks; files created in `order` (default 0..n-1)."""
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    for i in order if order is not None else range(n):
        write_image(root / "JPEGImages" / f"img_{i:03d}{ext}", i)
        mask = masks[i] if masks and i in masks else class_mask(i, classes=(0, 1 + i % 3))
        write_mask(root / "SegmentationClass" / f"img_{i:03d}.png", mask, voc_palette(4) if palette else None)
    return root


def write_list(path: Path, stems: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{s}\n" for s in stems))


def make_plain(root: Path, n: int = 5, splits: dict[str, list[int]] | None = None) -> Path:
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_image(root / "images" / f"p{i}.png", 100 + i)
        write_mask(root / "masks" / f"p{i}.png", class_mask(i, classes=(0, 2)))
    for name, idx in (splits or {}).items():
        write_list(root / "splits" / f"{name}.txt", [f"p{i}" for i in idx])
    return root


def make_cityscapes(root: Path, train_ids: bool) -> Path:
    """Two cities in `train`, one in `val`; masks as labelTrainIds or raw labelIds (7 road, 26 car, 0 unlabeled)."""
    label_ids = np.array([[7, 26, 0, 33]] * 2, np.uint8)  # -> trainIds 0, 13, ignore, 18
    for split, city, k in (("train", "aachen", 0), ("train", "bochum", 1), ("val", "lindau", 2)):
        stem = f"{city}_000000_00001{k}"
        write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", k, (2, 4))
        gt = root / "gtFine" / split / city
        gt.mkdir(parents=True, exist_ok=True)
        if train_ids:
            write_mask(gt / f"{stem}_gtFine_labelTrainIds.png", np.array([[0, 13, 255, 18]] * 2, np.uint8))
        else:
            write_mask(gt / f"{stem}_gtFine_labelIds.png", label_ids)
    return root


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    root = make_voc(tmp_path / "voc")
    write_list(root / "ImageSets" / "Segmentation" / "train.txt", ["img_000", "img_001", "img_002", "img_003"])
    write_list(root / "ImageSets" / "Segmentation" / "val.txt", ["img_004", "img_005"])
    (root / "classes.txt").write_text("background\nsunburn\nulcer\nwind scarring\n")
    return root


@pytest.fixture
def trees() -> SimpleNamespace:
    """The tree builders and `tree_digest` of this file."""
    return SimpleNamespace(class_mask=class_mask, make_cityscapes=make_cityscapes, make_plain=make_plain,
                           make_voc=make_voc, tree_digest=tree_digest, write_image=write_image, write_list=write_list)
