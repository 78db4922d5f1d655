"""`SegDataset`: the samples of one split, each pair read and validated when it is indexed.

```python
ds = open_dataset("demo/oranges", "train", num_classes=4)
image, mask = ds[0]          # H×W×3 uint8 RGB, H×W uint8 class indices (ignored pixels = ignore_index)
ds.transform = fn            # then ds[i] is fn(image, mask, i)
```
Opening lists files only; the checks (missing mask, unreadable image, size mismatch, label out of range)
happen on `ds[i]` and fail with a `DataError` naming the file and the value. The dataset holds plain data
(paths, ints, a stateless layout), so it pickles into DataLoader workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from segkd.data.io import read_class_file, read_image
from segkd.data.layouts import Layout, Sample, get_layout
from segkd.errors import DataError

Transform = Callable[[np.ndarray, np.ndarray, int], Any]


class SegDataset:
    """The image/mask pairs of one split of a dataset folder."""

    def __init__(
        self,
        root: Path,
        split: str,
        layout: Layout,
        samples: list[Sample],
        num_classes: int | None = None,
        ignore_index: int = 255,
        classes: list[str] | None = None,
        palette: list[list[int]] | None = None,
    ):
        self.root = root
        self.split = split
        self.layout = layout
        self.samples = samples
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.classes = classes  # from classes.txt, else the layout's own (Cityscapes), else None
        self.palette = palette
        self.transform: Transform | None = None

    @property
    def format(self) -> str:
        return self.layout.name

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        image, mask = self.load(index)
        return (image, mask) if self.transform is None else self.transform(image, mask, index)

    def __repr__(self) -> str:
        return f"SegDataset({self.format}, root={self.root}, split={self.split}, {len(self)} samples)"

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The validated pair at `index`, before any transform: (H×W×3 uint8 RGB, H×W uint8 indices)."""
        sample = self.samples[index]
        if sample.mask is None:
            raise DataError(f"{sample.image}: missing mask (expected {self.layout.expected_mask(self.root, sample)})")
        image = read_image(sample.image)  # H×W×3
        mask = self.layout.load_mask(sample.mask, self.ignore_index)  # H×W
        if image.shape[:2] != mask.shape:
            raise DataError(f"{sample.mask}: mask is {mask.shape[0]}×{mask.shape[1]} but image {sample.image.name} "
                            f"is {image.shape[0]}×{image.shape[1]}")
        check_labels(mask, sample.mask, self.num_classes, self.ignore_index)
        return image, mask


def check_labels(mask: np.ndarray, path: Path, num_classes: int | None, ignore_index: int) -> None:
    """DataError naming the file and the value when a label is >= num_classes and not the ignore index."""
    if num_classes is None or mask.size == 0 or int(mask.max()) < num_classes:
        return
    values = np.unique(mask[mask >= num_classes])
    bad = values[values != ignore_index]
    if bad.size:
        raise DataError(f"{path}: label value {int(bad[0])} >= num_classes {num_classes} "
                        f"(and not the ignore index {ignore_index})")


def open_dataset(
    root: Path | str,
    split: str = "train",
    *,
    format: str = "auto",
    num_classes: int | None = 4,
    ignore_index: int = 255,
    images: int | None = None,
) -> SegDataset:
    """The samples of `split` under `root` (a VOC, plain or Cityscapes layout; `format="auto"` detects it).

    `images=N` keeps the first N samples of the split list (file order; folder splits are sorted by stem).
    `num_classes=None` takes the count from `classes.txt` when present, else skips the label range check.
    Raises DataError when the root, its layout or the split list is missing.
    """
    root = Path(root)
    if not 0 <= ignore_index <= 255:
        raise DataError(f"ignore_index={ignore_index} must be in 0..255 (masks are uint8)")
    if images is not None and images < 0:
        raise DataError(f"images={images} must be >= 0")
    layout = get_layout(root, format)
    samples = layout.samples(root, split)
    if images is not None:
        samples = samples[:images]
    names, palette = read_class_file(root) or (layout.default_classes, layout.default_palette)
    if num_classes is None and names:
        num_classes = len(names)
    return SegDataset(root, split, layout, samples, num_classes, ignore_index, names, palette)
