"""Synthetic demo data: navel oranges on a conveyor with FastSegFormer's three defect classes.

`generate_oranges(out, n_images, size, seed)` writes a VOC-layout dataset (JPEGImages/*.jpg, palette PNGs in
SegmentationClass/, classes.txt, stratified 6:2:2 split lists) that segkd trains on out of the box.

Each image: a belt (grain, ridges, uneven light, brown dirt and streaks) with 1-4 textured fruits (pores,
colour drift, navel, specks, regreening, highlights, soft shadows; some cut by the border or partly hidden
by a neighbour), defects painted into the peel before lighting, then white balance, exposure, sensor noise,
slight blur and JPEG. Labels are exact: a pixel is a defect where that defect's paint was applied inside the
visible fruit. Healthy look-alikes (navel, dark specks, pale oil spots, regreening, highlights, belt streaks)
are background, so the classes are learnable but not trivially separable.

Image `i` depends only on (seed, i): `numpy.random.default_rng([seed, i])`; the same seed gives byte-identical
files, and a bigger `n_images` only adds images.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from segkd.data.io import write_classes, write_mask
from segkd.data.palette import voc_palette
from segkd.data.split import split_dataset
from segkd.data.synthetic_defects import DEFECT_PAINTERS
from segkd.data.synthetic_scene import (
    FruitPatch,
    add_belt_dirt,
    cast_shadow,
    draw_belt,
    fine_noise,
    paint_blemishes,
    paint_navel,
    paint_peel,
    place_fruits,
    shade_and_composite,
    smooth_noise,
)
from segkd.errors import DataError, SegkdError
from segkd.outputs import atomic_write, guard_outputs

CLASSES = ["background", "sunburn", "ulcer", "wind_scarring"]
PALETTE = voc_palette(len(CLASSES))  # (0,0,0), (128,0,0), (0,128,0), (128,128,0) as FastSegFormer
DEFECT_PROBABILITY = {1: 0.4, 2: 0.5, 3: 0.5}  # per fruit, independently
MARKER = "segkd_demo.json"  # written last; says the folder is the generator's and lists its files
JPEG_QUALITY = 92


def render_oranges(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene -> (H×W×3 uint8 RGB image, H×W uint8 mask with classes 0..3)."""
    scale = min(h, w) / 256
    image = draw_belt(rng, h, w, scale)  # H×W×3 float32
    add_belt_dirt(rng, image, scale)
    label = np.zeros((h, w), np.uint8)
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), rng.uniform(0.7, 1.0)], np.float32)
    light /= np.linalg.norm(light)
    style = {"ambient": rng.uniform(0.3, 0.45), "diffuse": rng.uniform(0.55, 0.8), "specular": rng.uniform(0.12, 0.35),
             "shininess": rng.uniform(12, 40), "bump": rng.uniform(0.1, 0.25)}
    fine = fine_noise(rng, (h, w), rng.uniform(0.6, 1.0) * scale)  # peel pores
    coarse = smooth_noise(rng, (h, w), 24 * scale)  # colour drift
    for spec in place_fruits(rng, h, w):
        cast_shadow(image, spec, light, rng.uniform(0.35, 0.6))
        patch = FruitPatch(spec, h, w, fine, coarse)
        if not patch.inside.any():
            continue
        paint_peel(rng, patch)
        if rng.random() < 0.6:
            paint_navel(rng, patch)
        paint_blemishes(rng, patch, scale)
        for cls in rng.permutation(list(DEFECT_PROBABILITY)):
            if rng.random() < DEFECT_PROBABILITY[cls]:
                DEFECT_PAINTERS[cls](rng, patch, scale)
        shade_and_composite(patch, image, label, light, style, scale)
    return finish_photo(rng, image, scale), label


def finish_photo(rng: np.random.Generator, image: np.ndarray, scale: float) -> np.ndarray:
    """Camera effects: white balance, exposure, slight blur, sensor noise, gamma -> H×W×3 uint8."""
    balance = np.array([1 + rng.normal(0, 0.04), 1.0, 1 + rng.normal(0, 0.05)], np.float32) * rng.uniform(0.85, 1.15)
    image = image * balance
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 0.8) * scale)
    image += rng.standard_normal(image.shape, np.float32) * rng.uniform(0.006, 0.02)
    gamma = ((np.arange(256) / 255) ** rng.uniform(0.85, 1.15) * 255 + 0.5).astype(np.uint8)
    return cv2.LUT((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), gamma)


def generate_oranges(out: Path | str, n_images: int = 200, size: tuple[int, int] | int = (256, 256),
                     seed: int = 0) -> Path:
    """Write the demo dataset (VOC layout) at `out` and return it.

    `size` is (H, W) or one side. `out` must be missing, empty, or an earlier output of this generator (its
    marker file lists what it wrote; those files are removed and written anew, anything else is left alone). A
    file it is about to write that segkd did not write is refused first (`segkd.outputs.guard_outputs`).
    """
    out = Path(out)
    h, w = (size, size) if isinstance(size, int) else size
    if n_images < 1:
        raise SegkdError(f"images={n_images}: generate at least 1 image")
    if min(h, w) < 32:
        raise SegkdError(f"size={h}×{w}: each side must be at least 32 pixels")
    images, masks = out / "JPEGImages", out / "SegmentationClass"
    stems = [f"orange_{i:05d}" for i in range(n_images)]
    planned = [*(images / f"{s}.jpg" for s in stems), *(masks / f"{s}.png" for s in stems), out / "classes.txt",
               out / MARKER]
    guard_outputs(planned, force=True)  # before anything is removed: segkd's own files replaced, others refused
    _clear_previous(out)
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(exist_ok=True)
    files = []
    for i, stem in enumerate(stems):
        image, mask = render_oranges(np.random.default_rng([seed, i]), h, w)
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        with atomic_write(images / f"{stem}.jpg", durable=False) as f:
            f.write(jpg.tobytes())
        write_mask(masks / f"{stem}.png", mask, PALETTE)
        files += [f"JPEGImages/{stem}.jpg", f"SegmentationClass/{stem}.png"]
    write_classes(out, CLASSES, PALETTE)
    report = split_dataset(out, "6:2:2", seed=seed, stratify=True)
    files += ["classes.txt"] + [p.relative_to(out).as_posix() for p in report.written]
    marker = {"generator": "segkd.data.synthetic.generate_oranges", "seed": seed, "images": n_images,
              "size": [h, w], "files": files}
    with atomic_write(out / MARKER, "w", encoding="utf-8") as f:
        f.write(json.dumps(marker, indent=1) + "\n")
    return out


def _clear_previous(out: Path) -> None:
    """Refuse a non-empty folder the generator did not make; else remove the files its marker lists."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if not any(out.iterdir()):
        return
    marker = out / MARKER
    if not marker.is_file():
        raise DataError(f"{out}: folder is not empty and was not made by segkd demo; choose another output folder")
    try:
        listed = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{marker}: unreadable demo marker; remove the folder or choose another one") from None
    root = out.resolve()
    for rel in listed + [MARKER]:
        path = (out / rel).resolve()
        if path.is_relative_to(root) and path.is_file():
            path.unlink()
