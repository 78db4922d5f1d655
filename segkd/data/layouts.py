"""Dataset layouts on disk: where images, masks and split lists live, found by folder names alone.

- `voc`: `JPEGImages/*.jpg|png`, `SegmentationClass/*.png` (class-index or palette PNGs),
  split lists `ImageSets/Segmentation/<split>.txt` (one stem per line).
- `plain`: `images/`, `masks/` with the same stems, optional `splits/<split>.txt`. Without a list file the
  split `all` is every pair.
- `cityscapes`: `leftImg8bit/<split>/<city>/<name>_leftImg8bit.png` with
  `gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png` (used as is) or `..._labelIds.png` (mapped to the
  19 train ids; every other label id becomes the ignore index). Its splits are folders, not lists.

Listing reads directory entries only (no file is opened), so a 100k-image tree lists in well under a second.
A layout holds no state: datasets built on it pickle into DataLoader workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from segkd.data.io import read_mask
from segkd.errors import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_EXTS = (".png", ".bmp", ".tif", ".tiff")
LIST_SPLITS = ("train", "val", "test", "trainval")  # the lists `segkd split` manages

# Cityscapes (cityscapesScripts labels.py): the 19 evaluated classes, their colours, and labelId -> trainId.
CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]
CITYSCAPES_PALETTE = [
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
    [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60], [255, 0, 0],
    [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32],
]
CITYSCAPES_TRAIN_IDS = {  # labelId -> trainId; every other labelId is ignored
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}


@dataclass(frozen=True)
class Sample:
    """One image and its mask; `mask` is None when the layout has no mask file for the stem."""

    stem: str
    image: Path
    mask: Path | None


@dataclass
class Scan:
    """The image and mask files of a tree by stem; pairs are the stems with both (`Sample`s built on demand)."""

    image_dir: Path
    mask_dir: Path
    images: dict[str, str]  # stem -> file name
    masks: dict[str, str]

    @cached_property
    def stems(self) -> list[str]:
        """Sorted stems that have an image and a mask."""
        return sorted(self.images.keys() & self.masks.keys())

    @property
    def pairs(self) -> list[Sample]:
        return [self.sample(s) for s in self.stems]

    def sample(self, stem: str) -> Sample:
        """The sample of a stem that has an image; its mask is None when it has none."""
        mask = self.masks.get(stem)
        return Sample(stem, self.image_dir / self.images[stem], self.mask_dir / mask if mask else None)

    @property
    def images_only(self) -> list[str]:
        """File names of images without a mask, sorted."""
        return sorted(self.images[s] for s in self.images.keys() - self.masks.keys())

    @property
    def masks_only(self) -> list[str]:
        return sorted(self.masks[s] for s in self.masks.keys() - self.images.keys())


class Layout:
    """A dataset layout: how to find its splits and samples under a root folder."""

    name = ""
    markers: tuple[str, ...] = ()  # sub-folders that identify the layout
    default_classes: list[str] | None = None
    default_palette: list[list[int]] | None = None

    def matches(self, root: Path) -> bool:
        return all((root / m).is_dir() for m in self.markers)

    def splits(self, root: Path) -> list[str]:
        raise NotImplementedError

    def samples(self, root: Path, split: str) -> list[Sample]:
        raise NotImplementedError

    def load_mask(self, path: Path, ignore_index: int = 255) -> np.ndarray:
        """H×W uint8 class indices for one mask file of this layout."""
        return read_mask(path)

    def expected_mask(self, root: Path, sample: Sample) -> Path:
        """Where the mask of `sample` should be (for error messages)."""
        raise NotImplementedError

    def list_dir(self, root: Path) -> Path | None:
        """The folder of split lists, or None when splits are folders (they cannot be written)."""
        return None


class ListLayout(Layout):
    """Flat image and mask folders paired by stem, with split lists `<list folder>/<split>.txt`."""

    image_dir = ""
    mask_dir = ""
    lists = ""
    image_exts = IMAGE_EXTS
    mask_exts = MASK_EXTS
    all_split: str | None = None  # the split that means "every pair" when it has no list file

    def list_dir(self, root: Path) -> Path:
        return root / self.lists

    def splits(self, root: Path) -> list[str]:
        folder = self.list_dir(root)
        found = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
        return found + [self.all_split] if self.all_split and self.all_split not in found else found

    def scan(self, root: Path) -> Scan:
        """Image and mask files by stem; reads directory entries only."""
        image_dir, mask_dir = root / self.image_dir, root / self.mask_dir
        return Scan(image_dir, mask_dir, _index(image_dir, self.image_exts), _index(mask_dir, self.mask_exts))

    def samples(self, root: Path, split: str) -> list[Sample]:
        check_split_name(root, split)
        path = self.list_dir(root) / f"{split}.txt"
        if not path.is_file():
            if split == self.all_split:
                return self.scan(root).pairs
            have = ", ".join(self.splits(root)) or "none"
            raise DataError(f"{path}: split list not found (splits here: {have}; write lists with segkd split)")
        stems = read_split_list(path)
        escaping = [s for s in stems if not _plain_stem(s)]
        if escaping:
            raise DataError(f"{path}: '{escaping[0]}' leaves the data root (a split list holds file stems, "
                            f"no paths){f' (+{len(escaping) - 1} more)' if len(escaping) > 1 else ''}")
        scan = self.scan(root)
        missing = [s for s in stems if s not in scan.images]
        if missing:
            raise DataError(f"{path}: {len(missing)} stem(s) have no image in {scan.image_dir}: {_first(missing)}")
        return [scan.sample(s) for s in stems]

    def expected_mask(self, root: Path, sample: Sample) -> Path:
        return root / self.mask_dir / f"{sample.stem}{self.mask_exts[0]}"


class VocLayout(ListLayout):
    name = "voc"
    markers = ("JPEGImages", "SegmentationClass")
    image_dir, mask_dir, lists = "JPEGImages", "SegmentationClass", "ImageSets/Segmentation"
    image_exts = (".jpg", ".jpeg", ".png")
    mask_exts = (".png",)


class PlainLayout(ListLayout):
    name = "plain"
    markers = ("images", "masks")
    image_dir, mask_dir, lists = "images", "masks", "splits"
    all_split = "all"


class CityscapesLayout(Layout):
    name = "cityscapes"
    markers = ("leftImg8bit", "gtFine")
    default_classes = CITYSCAPES_CLASSES
    default_palette = CITYSCAPES_PALETTE
    image_suffix = "_leftImg8bit.png"
    mask_suffixes = ("_gtFine_labelTrainIds.png", "_gtFine_labelIds.png")  # preferred first

    def splits(self, root: Path) -> list[str]:
        return sorted(p.name for p in (root / "leftImg8bit").iterdir() if p.is_dir())

    def samples(self, root: Path, split: str) -> list[Sample]:
        check_split_name(root, split)
        folder = root / "leftImg8bit" / split
        if not folder.is_dir():
            raise DataError(f"{folder}: split folder not found (splits here: {', '.join(self.splits(root))})")
        found = []
        for city in sorted(p for p in folder.iterdir() if p.is_dir()):
            gt = root / "gtFine" / split / city.name
            for name in sorted(n for n in os.listdir(city) if n.endswith(self.image_suffix)):
                stem = name[: -len(self.image_suffix)]
                mask = next((gt / f"{stem}{s}" for s in self.mask_suffixes if (gt / f"{stem}{s}").is_file()), None)
                found.append(Sample(stem, city / name, mask))
        return found

    def load_mask(self, path: Path, ignore_index: int = 255) -> np.ndarray:
        mask = read_mask(path)
        if not path.name.endswith("_labelIds.png"):
            return mask
        return train_id_lut(ignore_index)[mask]

    def expected_mask(self, root: Path, sample: Sample) -> Path:
        city, split = sample.image.parent.name, sample.image.parent.parent.name
        return root / "gtFine" / split / city / f"{sample.stem}{self.mask_suffixes[0]}"


LAYOUTS: dict[str, Layout] = {lay.name: lay for lay in (VocLayout(), PlainLayout(), CityscapesLayout())}


def train_id_lut(ignore_index: int = 255) -> np.ndarray:
    """256-entry uint8 table: Cityscapes labelId -> trainId, every other id -> `ignore_index`."""
    lut = np.full(256, ignore_index, np.uint8)
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        lut[label_id] = train_id
    return lut


def detect_format(root: Path | str) -> str:
    """`voc`, `plain` or `cityscapes` from the folder names under `root`; DataError when none matches."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    for name, layout in LAYOUTS.items():
        if layout.matches(root):
            return name
    nested = sorted(p.name for p in root.iterdir() if p.is_dir() and any(lay.matches(p) for lay in LAYOUTS.values()))
    hint = f"; did you mean {root / nested[0]}?" if nested else ""
    raise DataError(f"{root}: no dataset layout found (expected JPEGImages/ + SegmentationClass/ for VOC, "
                    f"images/ + masks/ for plain, or leftImg8bit/ + gtFine/ for Cityscapes){hint}")


def get_layout(root: Path | str, format: str = "auto") -> Layout:
    """The layout of `root`: detected for `auto`, else checked against the folders."""
    root = Path(root)
    if format == "auto":
        return LAYOUTS[detect_format(root)]
    if format not in LAYOUTS:
        raise DataError(f"unknown dataset format '{format}' (use auto, {', '.join(LAYOUTS)})")
    layout = LAYOUTS[format]
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    if not layout.matches(root):
        raise DataError(f"{root}: not a {format} layout (expected folders {', '.join(layout.markers)})")
    return layout


def check_split_name(root: Path, split: str) -> None:
    """A split is a list or folder name under the data root: a path (`../x`, `a/b`) is refused."""
    if not _plain_stem(split):
        raise DataError(f"split '{split}' leaves the data root {root} (give a split name such as val or test)")


def _plain_stem(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def read_split_list(path: Path) -> list[str]:
    """Stems of a split list, in file order: the first word of each non-blank line."""
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _index(folder: Path, exts: tuple[str, ...]) -> dict[str, str]:
    """stem -> file name for the files of `folder` with one of `exts`; two files with one stem is an error."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    found: dict[str, str] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            stem, dot, ext = name.rpartition(".")
            if not dot or name[0] == "." or f".{ext.lower()}" not in exts:
                continue
            if stem in found:
                raise DataError(f"{folder}: '{found[stem]}' and '{name}' share the stem '{stem}'")
            found[stem] = name
    return found


def _first(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")
