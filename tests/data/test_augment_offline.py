"""Offline augmentation (`segkd augment`'s library): counts, untouched val/test, labels, exact flips,
determinism across workers, layouts, corrupt files, recipes (also as a preset's online `augment:`)."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import yaml
from PIL import Image

from segkd.data.augment import build_train_transform
from segkd.data.augment_offline import augment_dataset
from segkd.data.augment_preview import PREVIEW_FILE, TILE_H
from segkd.data.augment_recipes import load_recipe, recipe_names
from segkd.data.io import read_image, read_mask
from segkd.errors import ConfigError, DataError
from segkd.outputs import OutputError

LISTS = Path("ImageSets") / "Segmentation"


@pytest.fixture
def voc3(voc: Path) -> Path:
    """The conftest VOC tree (train 4, val 2) with a test list and trainval."""
    (voc / LISTS / "val.txt").write_text("img_004\n")
    (voc / LISTS / "test.txt").write_text("img_005\n")
    (voc / LISTS / "trainval.txt").write_text("img_000\nimg_001\nimg_002\nimg_003\nimg_004\n")
    return voc


def _recipe(tmp_path: Path, doc, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def test_counts_per_split_and_lists(voc3: Path, tmp_path: Path):
    out = tmp_path / "out"
    report = augment_dataset(voc3, out, times=3, workers=1)
    assert report.images == {"train": (4, 16), "val": (1, 1), "test": (1, 1), "trainval": (5, 17)}
    train = (out / LISTS / "train.txt").read_text().split()
    assert train[:4] == ["img_000", "img_000_aug1", "img_000_aug2", "img_000_aug3"] and len(train) == 16
    assert (out / LISTS / "trainval.txt").read_text().split()[-1] == "img_004"
    for stem in train:
        assert (out / "JPEGImages" / f"{stem}.jpg").is_file() and (out / "SegmentationClass" / f"{stem}.png").is_file()
    assert len(list((out / "JPEGImages").glob("*.jpg"))) == 18  # 16 train + val + test, nothing else
    assert (out / "classes.txt").read_bytes() == (voc3 / "classes.txt").read_bytes()
    assert report.classes == ["background", "sunburn", "ulcer", "wind scarring"]
    assert sum(report.pixels_after) > sum(report.pixels_before) > 0


def test_val_and_test_are_byte_identical(voc3: Path, tmp_path: Path, trees):
    before = trees.tree_digest(voc3)
    out = tmp_path / "out"
    augment_dataset(voc3, out, times=2, workers=2)
    assert trees.tree_digest(voc3) == before  # DATA untouched
    for rel in ("JPEGImages/img_004.jpg", "SegmentationClass/img_004.png", "JPEGImages/img_005.jpg",
                "SegmentationClass/img_005.png", "JPEGImages/img_000.jpg", "SegmentationClass/img_000.png",
                f"{LISTS.as_posix()}/val.txt", f"{LISTS.as_posix()}/test.txt"):
        assert (out / rel).read_bytes() == (voc3 / rel).read_bytes(), rel
    assert not list((out / "JPEGImages").glob("img_004_aug*")) and not list((out / "JPEGImages").glob("img_005_aug*"))


@pytest.mark.parametrize("recipe", recipe_names())
def test_copies_only_hold_source_labels_and_the_fill(voc3: Path, tmp_path: Path, recipe: str):
    rec = load_recipe(recipe)
    out = tmp_path / "out"
    augment_dataset(voc3, out, times=3, recipe=recipe, workers=1, seed=3)
    for stem in ("img_000", "img_001", "img_002", "img_003"):
        source = read_mask(voc3 / "SegmentationClass" / f"{stem}.png")
        image = read_image(voc3 / "JPEGImages" / f"{stem}.jpg")
        allowed = set(np.unique(source).tolist()) | {rec.mask_fill}
        for k in (1, 2, 3):
            mask = read_mask(out / "SegmentationClass" / f"{stem}_aug{k}.png")
            assert mask.shape == source.shape and read_image(out / "JPEGImages" / f"{stem}_aug{k}.jpg").shape == \
                image.shape  # copies keep their size
            assert set(np.unique(mask).tolist()) <= allowed, (stem, k)


def test_copies_keep_the_masks_palette(voc3: Path, tmp_path: Path):
    augment_dataset(voc3, tmp_path / "out", times=1, workers=1)
    with Image.open(voc3 / "SegmentationClass" / "img_000.png") as source, \
            Image.open(tmp_path / "out" / "SegmentationClass" / "img_000_aug1.png") as copy:
        copy.load()
        assert copy.mode == source.mode == "P" and copy.getpalette()[:12] == source.getpalette()[:12]


def test_a_horizontal_flip_is_the_exact_mirror(tmp_path: Path, trees):
    data = trees.make_plain(tmp_path / "plain", n=4, splits={"train": [0, 1], "val": [2, 3]})
    recipe = _recipe(tmp_path, [{"op": "hflip", "p": 1.0}])
    out = tmp_path / "out"
    augment_dataset(data, out, times=2, recipe=recipe, workers=1)
    for stem in ("p0", "p1"):
        image, mask = read_image(data / "images" / f"{stem}.png"), read_mask(data / "masks" / f"{stem}.png")
        for k in (1, 2):
            assert (read_image(out / "images" / f"{stem}_aug{k}.png") == image[:, ::-1]).all()
            assert (read_mask(out / "masks" / f"{stem}_aug{k}.png") == mask[:, ::-1]).all()


def test_same_seed_same_bytes_whatever_the_workers(voc3: Path, tmp_path: Path, trees):
    recipe = _recipe(tmp_path, [{"op": "hflip"}, {"op": "affine", "p": 1}, {"op": "gaussian_noise", "p": 1},
                                {"op": "random_resized_paste", "scale": [0.5, 1.5]}, {"op": "color_distort"}])
    one = augment_dataset(voc3, tmp_path / "w1", times=3, recipe=recipe, workers=1, seed=5, preview=True)
    two = augment_dataset(voc3, tmp_path / "w2", times=3, recipe=recipe, workers=2, seed=5, preview=True)
    assert one.workers == 1 and two.workers == 2
    assert trees.tree_digest(tmp_path / "w1") == trees.tree_digest(tmp_path / "w2")
    augment_dataset(voc3, tmp_path / "s6", times=3, recipe=recipe, workers=2, seed=6)
    name = "JPEGImages/img_000_aug1.jpg"
    assert (tmp_path / "s6" / name).read_bytes() != (tmp_path / "w1" / name).read_bytes()


def test_a_copy_depends_on_its_stem_not_on_the_other_images(voc3: Path, tmp_path: Path):
    augment_dataset(voc3, tmp_path / "all", times=2, workers=1, seed=1)
    (voc3 / LISTS / "train.txt").write_text("img_003\n")
    (voc3 / LISTS / "trainval.txt").write_text("img_003\n")
    augment_dataset(voc3, tmp_path / "one", times=2, workers=1, seed=1)
    for rel in ("JPEGImages/img_003_aug2.jpg", "SegmentationClass/img_003_aug2.png"):
        assert (tmp_path / "all" / rel).read_bytes() == (tmp_path / "one" / rel).read_bytes()


def test_preview_grid(voc3: Path, tmp_path: Path):
    report = augment_dataset(voc3, tmp_path / "out", times=3, workers=1, preview=True)
    assert report.preview == tmp_path / "out" / PREVIEW_FILE
    grid = read_image(report.preview)
    assert grid.shape[0] == 4 * TILE_H + 3 * 4  # four source rows, 4 px gaps
    assert grid.shape[1] == 4 * round(8 * TILE_H / 6) + 3 * 4  # original + 3 copies of 6×8 images


def test_cityscapes_copies_sit_in_their_city(tmp_path: Path, trees):
    data = trees.make_cityscapes(tmp_path / "cs", train_ids=False)
    out = tmp_path / "out"
    report = augment_dataset(data, out, times=2, workers=1)
    assert report.images == {"train": (2, 6), "val": (1, 1)}
    city = out / "leftImg8bit" / "train" / "aachen"
    assert sorted(p.name for p in city.glob("*.png")) == [
        "aachen_000000_000010_aug1_leftImg8bit.png", "aachen_000000_000010_aug2_leftImg8bit.png",
        "aachen_000000_000010_leftImg8bit.png"]
    gt = out / "gtFine" / "train" / "aachen"
    assert (gt / "aachen_000000_000010_gtFine_labelIds.png").read_bytes() == (
        data / "gtFine" / "train" / "aachen" / "aachen_000000_000010_gtFine_labelIds.png").read_bytes()
    copy = read_mask(gt / "aachen_000000_000010_aug1_gtFine_labelTrainIds.png")  # train ids, as the loader reads
    assert set(np.unique(copy).tolist()) <= {0, 13, 18, 255}
    assert (out / "classes.txt").read_text().splitlines()[0].startswith("road")
    val = "leftImg8bit/val/lindau/lindau_000000_000012_leftImg8bit.png"
    assert (out / val).read_bytes() == (data / val).read_bytes()


def test_corrupt_pairs_are_skipped_by_name(voc3: Path, tmp_path: Path):
    (voc3 / "JPEGImages" / "img_001.jpg").write_bytes(b"not a jpeg")
    report = augment_dataset(voc3, tmp_path / "out", times=2, workers=2)
    assert len(report.skipped) == 1 and "img_001.jpg: unreadable image" in report.skipped[0]
    assert report.images["train"] == (4, 9)
    train = (tmp_path / "out" / LISTS / "train.txt").read_text().split()
    assert "img_001" not in train and "img_001_aug1" not in train and "img_002_aug2" in train
    assert not (tmp_path / "out" / "JPEGImages" / "img_001.jpg").exists()


def test_albumentations_pipeline_file_is_a_recipe(voc3: Path, tmp_path: Path):
    path = tmp_path / "pipeline.yaml"
    A.save(A.Compose([A.HorizontalFlip(p=1.0)]), str(path), data_format="yaml")
    out = tmp_path / "out"
    augment_dataset(voc3, out, times=1, recipe=path, workers=1)
    source = read_mask(voc3 / "SegmentationClass" / "img_002.png")
    assert (read_mask(out / "SegmentationClass" / "img_002_aug1.png") == source[:, ::-1]).all()


def test_a_recipe_file_is_a_presets_online_augment(tmp_path: Path):
    ops = [{"op": "hflip", "p": 0.5}, {"op": "affine", "rotate": 15, "p": 0.7},
           {"op": "random_resized_crop", "scale": [0.5, 1.0]}, {"op": "gaussian_blur", "p": 0.3}]
    recipe = load_recipe(_recipe(tmp_path, {"mask_pad": "background", "augment": ops}))
    assert recipe.ops == ops and recipe.mask_fill == 0
    data_cfg = dict(input_size=32, resize="resize", pad_value=128, mask_pad="background", ignore_index=255,
                    mean=[0.0] * 3, std=[1.0] * 3)
    transform = build_train_transform(recipe.ops, data_cfg, 32)
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out, mask = transform(image, np.ones((40, 60), np.uint8), np.random.default_rng(1))
    assert out.shape == (32, 32, 3) and mask.shape == (32, 32)  # online: the network input size
    assert set(np.unique(mask).tolist()) <= {0, 1}


@pytest.mark.parametrize("doc, message", [
    ([{"op": "hflip"}, {"op": "flipp"}], "augment[1]: unknown op 'flipp'"),
    ({"augment": [{"op": "affine", "rotat": 3}]}, "augment[0]: op 'affine' has no parameter 'rotat', did you mean"),
    ({"augment": [], "mask_padding": "ignore"}, "unknown key 'mask_padding', did you mean 'mask_pad'?"),
    ({"augment": [], "mask_pad": "zero"}, "mask_pad='zero' is not 'ignore' or 'background'"),
    ("hflip", "a recipe is an op list"),
])
def test_recipe_errors_name_the_file_and_position(voc3: Path, tmp_path: Path, doc, message):
    recipe = _recipe(tmp_path, doc)
    with pytest.raises(ConfigError) as e:
        augment_dataset(voc3, tmp_path / "out", recipe=recipe)
    assert str(recipe) in str(e.value) and message in str(e.value)
    assert not (tmp_path / "out").exists()


def test_refusals_before_anything_is_written(voc3: Path, tmp_path: Path, trees):
    before = trees.tree_digest(voc3)
    cases = [
        (dict(out=voc3 / "aug"), OutputError, "lies inside it"),
        (dict(out=voc3), OutputError, "--out is DATA"),
        (dict(out=tmp_path / "o", times=0), DataError, "--times 0"),
        (dict(out=tmp_path / "o", seed=-1), DataError, "--seed -1"),
        (dict(out=tmp_path / "o", split="extra"), DataError, "extra.txt: split list not found"),
        (dict(out=voc3.parent), OutputError, "DATA lies inside --out"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message.replace("(", r"\(")):
            augment_dataset(voc3, **kwargs)
    assert trees.tree_digest(voc3) == before and not (tmp_path / "o").exists()


def test_leaks_and_name_clashes_are_refused(voc3: Path, tmp_path: Path):
    (voc3 / LISTS / "val.txt").write_text("img_004\nimg_002\n")
    with pytest.raises(DataError, match="in both train.txt and val.txt .first: img_002"):
        augment_dataset(voc3, tmp_path / "out")
    (voc3 / LISTS / "val.txt").write_text("img_004\n")
    (voc3 / "JPEGImages" / "img_005.jpg").rename(voc3 / "JPEGImages" / "img_000_aug1.jpg")
    (voc3 / "SegmentationClass" / "img_005.png").rename(voc3 / "SegmentationClass" / "img_000_aug1.png")
    (voc3 / LISTS / "test.txt").write_text("img_000_aug1\n")
    with pytest.raises(DataError, match="'img_000_aug1' is already a stem of DATA"):
        augment_dataset(voc3, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_force_replaces_only_an_earlier_augment_output(voc3: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()  # an empty folder is fine without --force
    augment_dataset(voc3, out, times=1, workers=1)
    with pytest.raises(OutputError, match="pass --force"):
        augment_dataset(voc3, out, times=2)
    augment_dataset(voc3, out, times=2, workers=1, force=True)
    assert len((out / LISTS / "train.txt").read_text().split()) == 12
    assert [p.name for p in tmp_path.iterdir() if "segkd-tmp" in p.name] == []  # no staging folder left
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not written by segkd augment"):
        augment_dataset(voc3, foreign, force=True)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_no_split_lists(tmp_path: Path, trees):
    data = trees.make_plain(tmp_path / "plain", n=3)
    with pytest.raises(DataError, match=r"has no split lists: run `segkd split .*plain` first"):
        augment_dataset(data, tmp_path / "out")
