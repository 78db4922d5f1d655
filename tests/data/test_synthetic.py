"""The synthetic orange-defect generator: determinism, classes, value range, layout, safety of its folder."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segkd.data import open_dataset, read_class_file, read_mask
from segkd.data.synthetic import CLASSES, MARKER, PALETTE, generate_oranges, render_oranges
from segkd.outputs import OutputError
from segkd.errors import DataError, SegkdError


@pytest.fixture(scope="module")
def oranges(tmp_path_factory) -> Path:
    return generate_oranges(tmp_path_factory.mktemp("gen") / "oranges", n_images=12, size=(64, 80), seed=0)


def test_layout_classes_and_splits(oranges: Path):
    assert read_class_file(oranges) == (CLASSES, PALETTE)
    sizes = {s: len(open_dataset(oranges, s, num_classes=4)) for s in ("train", "val", "test", "trainval")}
    assert sizes == {"train": 7, "val": 3, "test": 2, "trainval": 10}  # 7.2 / 2.4 / 2.4, largest remainder
    image, mask = open_dataset(oranges, "train", num_classes=4)[0]
    assert image.shape == (64, 80, 3) and mask.shape == (64, 80)


def test_masks_hold_all_four_classes_and_nothing_else(oranges: Path):
    masks = [read_mask(p) for p in sorted((oranges / "SegmentationClass").glob("*.png"))]
    assert len(masks) == 12
    values = set(np.unique(np.stack(masks)).tolist())
    assert values == {0, 1, 2, 3}
    assert Image.open(oranges / "SegmentationClass" / "orange_00000.png").mode == "P"  # VOC-style palette PNG


def test_same_seed_same_bytes(tmp_path: Path, oranges: Path):
    again = generate_oranges(tmp_path / "again", n_images=12, size=(64, 80), seed=0)
    for path in sorted(p for p in oranges.rglob("*") if p.is_file()):
        assert (again / path.relative_to(oranges)).read_bytes() == path.read_bytes(), path.name


def test_image_depends_only_on_seed_and_index(tmp_path: Path, oranges: Path):
    fewer = generate_oranges(tmp_path / "fewer", n_images=3, size=(64, 80), seed=0)
    name = "JPEGImages/orange_00002.jpg"
    assert (fewer / name).read_bytes() == (oranges / name).read_bytes()
    other = generate_oranges(tmp_path / "other", n_images=3, size=(64, 80), seed=1)
    assert (other / name).read_bytes() != (oranges / name).read_bytes()


def test_render_value_range():
    image, mask = render_oranges(np.random.default_rng([5, 0]), 48, 48)
    assert image.dtype == np.uint8 and image.shape == (48, 48, 3) and 0 < image.std()
    assert mask.dtype == np.uint8 and mask.max() <= 3 and (mask == 0).mean() > 0.5


def test_refuses_a_foreign_folder(tmp_path: Path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match=r"mine: folder is not empty and was not made by segkd demo"):
        generate_oranges(out, n_images=2, size=32)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_regenerating_replaces_only_its_own_files(tmp_path: Path):
    out = generate_oranges(tmp_path / "o", n_images=5, size=32)
    (out / "notes.txt").write_text("keep me")
    generate_oranges(out, n_images=3, size=32, seed=2)
    names = sorted(p.name for p in (out / "JPEGImages").iterdir() if p.name != ".segkd-outputs")  # segkd's manifest
    assert names == [f"orange_0000{i}.jpg" for i in range(3)]
    assert (out / "notes.txt").read_text() == "keep me" and (out / MARKER).is_file()
    assert not list(out.rglob("*.bak"))


@pytest.mark.parametrize("kwargs, message", [({"n_images": 0}, "images=0"), ({"size": 16}, "size=16×16")])
def test_bad_arguments(tmp_path: Path, kwargs: dict, message: str):
    with pytest.raises(SegkdError, match=message):
        generate_oranges(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_a_foreign_file_where_the_generator_writes_is_refused_before_anything_is_removed(tmp_path: Path):
    out = generate_oranges(tmp_path / "o", n_images=3, size=32)
    foreign = out / "JPEGImages" / "orange_00004.jpg"
    foreign.write_bytes(b"the user's own photo")  # segkd never wrote this name: not in the folder's manifest
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(OutputError, match=r"orange_00004\.jpg: exists and was not written by segkd"):
        generate_oranges(out, n_images=5, size=32, seed=1)
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
