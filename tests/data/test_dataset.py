"""open_dataset on every layout, lazy validation with errors naming file and value, and picklability."""

import pickle
from pathlib import Path

import numpy as np
import pytest

from segkd.data import SegDataset, detect_format, open_dataset
from segkd.data.io import write_mask
from segkd.errors import DataError


def test_voc_palette_masks(voc: Path, trees):
    ds = open_dataset(voc, "train")
    assert isinstance(ds, SegDataset) and ds.format == "voc" and ds.root == voc and len(ds) == 4
    assert [s.stem for s in ds.samples] == ["img_000", "img_001", "img_002", "img_003"]
    image, mask = ds[1]
    assert image.shape == (6, 8, 3) and image.dtype == np.uint8
    assert mask.shape == (6, 8) and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, trees.class_mask(1, classes=(0, 2)))  # indices, not palette colours
    assert ds.classes == ["background", "sunburn", "ulcer", "wind scarring"]


def test_images_keeps_the_first_n(voc: Path):
    ds = open_dataset(voc, "train", images=2)
    assert [s.stem for s in ds.samples] == ["img_000", "img_001"]


def test_transform_and_pickle(voc: Path):
    ds = open_dataset(voc, "val")
    ds.transform = _shapes
    assert ds[0] == ((6, 8, 3), (6, 8), 0)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone[1] == ((6, 8, 3), (6, 8), 1)


def _shapes(image, mask, index):
    return image.shape, mask.shape, index


def test_plain_without_splits_is_all(tmp_path: Path, trees):
    root = trees.make_plain(tmp_path / "plain")
    assert detect_format(root) == "plain"
    ds = open_dataset(root, "all", num_classes=3)
    assert [s.stem for s in ds.samples] == ["p0", "p1", "p2", "p3", "p4"]
    assert set(np.unique(ds[0][1])) == {0, 2}
    with pytest.raises(DataError, match=r"splits/train\.txt: split list not found \(splits here: all; .*segkd split"):
        open_dataset(root, "train")


def test_plain_with_splits(tmp_path: Path, trees):
    root = trees.make_plain(tmp_path / "plain", splits={"train": [3, 1], "val": [0]})
    assert [s.stem for s in open_dataset(root, "train").samples] == ["p3", "p1"]  # list order is kept
    assert len(open_dataset(root, "all")) == 5


@pytest.mark.parametrize("train_ids", [True, False])
def test_cityscapes(tmp_path: Path, train_ids: bool, trees):
    root = trees.make_cityscapes(tmp_path / "cs", train_ids)
    assert detect_format(root) == "cityscapes"
    ds = open_dataset(root, "train", num_classes=19)
    assert [s.stem for s in ds.samples] == ["aachen_000000_000010", "bochum_000000_000011"]
    np.testing.assert_array_equal(ds[0][1], [[0, 13, 255, 18]] * 2)  # labelIds mapped to trainIds
    assert len(ds.classes) == 19 and ds.classes[13] == "car"
    assert len(open_dataset(root, "val", num_classes=19)) == 1


def test_cityscapes_prefers_train_ids(tmp_path: Path, trees):
    root = trees.make_cityscapes(tmp_path / "cs", train_ids=False)
    gt = root / "gtFine" / "val" / "lindau"
    write_mask(gt / "lindau_000000_000012_gtFine_labelTrainIds.png", np.full((2, 4), 5, np.uint8))
    assert (open_dataset(root, "val", num_classes=19)[0][1] == 5).all()


def test_detect_format_errors(tmp_path: Path, trees):
    with pytest.raises(DataError, match=r"nowhere: dataset folder not found"):
        detect_format(tmp_path / "nowhere")
    trees.make_voc(tmp_path / "VOC2007", n=1)
    with pytest.raises(DataError, match=rf"{tmp_path}: no dataset layout found .* did you mean .*VOC2007\?"):
        detect_format(tmp_path)


def test_explicit_format_must_match(voc: Path):
    with pytest.raises(DataError, match=r"not a plain layout \(expected folders images, masks\)"):
        open_dataset(voc, "train", format="plain")


def test_missing_split_list(voc: Path):
    with pytest.raises(DataError, match=r"ImageSets/Segmentation/test\.txt: split list not found \(splits here: "
                                        r"train, val"):
        open_dataset(voc, "test")


def test_list_naming_a_missing_image(voc: Path, trees):
    trees.write_list(voc / "ImageSets" / "Segmentation" / "test.txt", ["img_000", "ghost"])
    with pytest.raises(DataError, match=r"test\.txt: 1 stem\(s\) have no image in .*JPEGImages: ghost"):
        open_dataset(voc, "test")


def test_duplicate_stems(voc: Path, trees):
    trees.write_image(voc / "JPEGImages" / "img_000.png", 0)
    with pytest.raises(DataError, match=r"'img_000\.jpg' and 'img_000\.png' share the stem 'img_000'|"
                                        r"'img_000\.png' and 'img_000\.jpg' share the stem 'img_000'"):
        open_dataset(voc, "train")


def _expect_lazy_error(trees, root: Path, split: str, index: int, pattern: str) -> None:
    """Opening works; reading sample `index` fails with `pattern`; the tree is untouched."""
    before = trees.tree_digest(root)
    ds = open_dataset(root, split)
    with pytest.raises(DataError, match=pattern):
        ds[index]
    assert trees.tree_digest(root) == before


def test_missing_mask(voc: Path, trees):
    (voc / "SegmentationClass" / "img_002.png").unlink()
    _expect_lazy_error(trees, voc, "train", 2,
                       r"img_002\.jpg: missing mask \(expected .*SegmentationClass/img_002\.png\)")
    assert open_dataset(voc, "train").samples[2].mask is None


def test_corrupt_image(voc: Path, trees):
    (voc / "JPEGImages" / "img_001.jpg").write_bytes(b"\xff\xd8 truncated")
    _expect_lazy_error(trees, voc, "train", 1, r"JPEGImages/img_001\.jpg: unreadable image")


def test_size_mismatch(voc: Path, trees):
    write_mask(voc / "SegmentationClass" / "img_004.png", np.zeros((5, 8), np.uint8))
    _expect_lazy_error(trees, voc, "val", 0, r"img_004\.png: mask is 5×8 but image img_004\.jpg is 6×8")


def test_label_out_of_range(voc: Path, trees):
    mask = trees.class_mask(0, classes=(0, 1))
    mask[0, 0], mask[1, 1] = 255, 7  # 255 is the ignore index: fine; 7 is not
    write_mask(voc / "SegmentationClass" / "img_005.png", mask)
    _expect_lazy_error(trees, voc, "val", 1,
                       r"img_005\.png: label value 7 >= num_classes 4 \(and not the ignore index 255\)")


def test_ignore_index_is_accepted(voc: Path):
    write_mask(voc / "SegmentationClass" / "img_005.png", np.full((6, 8), 255, np.uint8))
    assert (open_dataset(voc, "val")[1][1] == 255).all()


def test_num_classes_from_classes_txt(voc: Path):
    write_mask(voc / "SegmentationClass" / "img_005.png", np.full((6, 8), 4, np.uint8))
    with pytest.raises(DataError, match=r"label value 4 >= num_classes 4"):
        open_dataset(voc, "val", num_classes=None)[1]
    assert open_dataset(voc, "val", num_classes=5)[1][1].max() == 4


def test_bad_arguments(voc: Path):
    with pytest.raises(DataError, match=r"ignore_index=300 must be in 0\.\.255"):
        open_dataset(voc, "train", ignore_index=300)
    with pytest.raises(DataError, match=r"images=-1 must be >= 0"):
        open_dataset(voc, "train", images=-1)
