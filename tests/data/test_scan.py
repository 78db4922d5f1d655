"""The data scan: every pair checked in parallel, the result cached beside the split lists by sizes and mtimes."""

import os

import cv2
import numpy as np
import pytest

from segkd.data import open_dataset
from segkd.data.scan import cache_path, save_cache, scan_split, scan_splits
from segkd.errors import DataError

from testkit import load_test_module

fx = load_test_module("engine_fixtures", "engine/conftest.py")


@pytest.fixture
def voc(tmp_path):
    return fx.make_voc_tree(tmp_path / "voc")


def test_a_clean_split_is_cached_and_a_changed_file_is_scanned_again(voc):
    ds = open_dataset(voc, "train", num_classes=3)
    first = scan_split(ds)
    assert not first.problems and not first.cached and not cache_path(ds).exists()
    save_cache(first)
    assert cache_path(ds).is_file()
    again = scan_split(open_dataset(voc, "train", num_classes=3))
    assert again.cached and not again.problems
    mask = voc / "SegmentationClass" / "img002.png"
    cv2.imwrite(str(mask), np.full((48, 48), 5, np.uint8))
    os.utime(mask, ns=(1, 1))  # a different mtime (and size): the cache key changes
    changed = scan_split(open_dataset(voc, "train", num_classes=3))
    assert not changed.cached and list(changed.problems.values()) == [
        f"{mask}: label value 5 >= num_classes 3 (and not the ignore index 255)"]


def test_the_settings_are_part_of_the_cache_key(voc):
    save_cache(scan_split(open_dataset(voc, "train", num_classes=3)))
    fewer = scan_split(open_dataset(voc, "train", num_classes=2))  # labels 2 now out of range
    assert not fewer.cached and fewer.problems


def test_skip_bad_keeps_the_rest_and_an_empty_split_still_fails(voc):
    cv2.imwrite(str(voc / "SegmentationClass" / "img001.png"), np.zeros((10, 10), np.uint8))
    logged = []
    kept = scan_splits({"train": open_dataset(voc, "train", num_classes=3),
                        "val": open_dataset(voc, "val", num_classes=3)}, skip_bad=True, log=logged.append)
    assert [len(d) for d in kept.values()] == [7, 4] and "1 of 8 train pairs left out" in logged[0]
    (voc / "ImageSets/Segmentation/val.txt").write_text("")
    with pytest.raises(DataError, match=r"val.txt: split 'val' has no images"):
        scan_splits({"val": open_dataset(voc, "val", num_classes=3)}, skip_bad=True)
