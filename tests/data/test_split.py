"""split_dataset: ratios, largest-remainder counts, determinism, coverage, stratification, safety."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from segkd.data import split as split_module
from segkd.data.layouts import read_split_list
from segkd.data.split import parse_ratio, split_counts, split_dataset, stratified_assignment
from segkd.errors import DataError, SegkdError


def _lists(root: Path) -> dict[str, list[str]]:
    folder = root / "ImageSets" / "Segmentation"
    return {p.stem: read_split_list(p) for p in sorted(folder.glob("*.txt"))}


@pytest.mark.parametrize("text, parts", [
    ("6:2:2", (6, 2, 2)), ("8:1:1", (8, 1, 1)), ("0.6:0.2:0.2", (Fraction(3, 5), Fraction(1, 5), Fraction(1, 5))),
    ("7:3", (7, 3)), (" 1 : 1 ", (1, 1)),
])
def test_parse_ratio(text: str, parts: tuple):
    assert parse_ratio(text) == parts


@pytest.mark.parametrize("text, message", [
    ("10", "give 2 or 3 parts"), ("1:1:1:1", "give 2 or 3 parts"), ("0:0:0", "the parts sum to 0"),
    ("-1:1:1", "'-1' is negative"), ("a:b:c", "'a' is not a number"), ("6:2:", "'' is not a number"),
    ("nan:1:1", "'nan' is not a number"), ("inf:1", "'inf' is not a number"),
])
def test_bad_ratios(text: str, message: str):
    with pytest.raises(SegkdError, match=f"ratio '{text}': {message}"):
        parse_ratio(text)


@pytest.mark.parametrize("n, ratio, counts", [
    (1448, "6:2:2", [869, 290, 289]), (1448, "0.6:0.2:0.2", [869, 290, 289]), (10, "6:2:2", [6, 2, 2]),
    (7, "6:2:2", [4, 2, 1]), (5, "1:1:1", [2, 2, 1]), (11, "7:3", [8, 3]), (1, "6:2:2", [1, 0, 0]),
    (100, "8:1:1", [80, 10, 10]),
])
def test_largest_remainder(n: int, ratio: str, counts: list[int]):
    assert split_counts(n, parse_ratio(ratio)) == counts


def test_counts_always_sum_to_n():
    for n in range(0, 60):
        for ratio in ("6:2:2", "1:1:1", "0.7:0.15:0.15", "3:1"):
            got = split_counts(n, parse_ratio(ratio))
            assert sum(got) == n
            quotas = [n * float(r) / float(sum(parse_ratio(ratio))) for r in parse_ratio(ratio)]
            assert all(abs(g - q) < 1 for g, q in zip(got, quotas))


def test_lists_are_disjoint_cover_and_sorted(tmp_path: Path, trees):
    root = trees.make_voc(tmp_path / "voc", n=23)
    report = split_dataset(root, "6:2:2", seed=3)
    lists = _lists(root)
    assert [len(lists[s]) for s in ("train", "val", "test")] == [14, 5, 4]  # 13.8, 4.6, 4.6
    stems = {f"img_{i:03d}" for i in range(23)}
    assert set(lists["train"]) | set(lists["val"]) | set(lists["test"]) == stems
    assert sum(len(lists[s]) for s in ("train", "val", "test")) == 23
    assert lists["trainval"] == sorted(lists["train"] + lists["val"])
    assert all(v == sorted(v) for v in lists.values())
    assert report.lists == {s: lists[s] for s in ("train", "val", "test")}


def test_deterministic_and_independent_of_creation_order(tmp_path: Path, trees):
    a = trees.make_voc(tmp_path / "a", n=15)
    b = trees.make_voc(tmp_path / "b", n=15, order=list(reversed(range(15))))
    split_dataset(a, "6:2:2", seed=7)
    split_dataset(b, "6:2:2", seed=7)
    assert _lists(a) == _lists(b)
    c = trees.make_voc(tmp_path / "c", n=15)
    split_dataset(c, "6:2:2", seed=8)
    assert _lists(c) != _lists(a)


def test_two_part_ratio(tmp_path: Path, trees):
    root = trees.make_voc(tmp_path / "voc", n=10)
    report = split_dataset(root, "7:3")
    lists = _lists(root)
    assert set(lists) == {"train", "val", "trainval"}
    assert [len(lists["train"]), len(lists["val"])] == [7, 3] and list(report.lists) == ["train", "val"]


def test_force_backs_up_and_empties_a_stale_test_list(tmp_path: Path, trees):
    root = trees.make_voc(tmp_path / "voc", n=10)
    split_dataset(root, "6:2:2")
    old = _lists(root)
    report = split_dataset(root, "7:3", force=True)
    folder = root / "ImageSets" / "Segmentation"
    assert read_split_list(folder / "test.txt") == []  # no stale stems overlap the new train/val
    assert read_split_list(folder / "test.txt.bak") == old["test"]
    assert read_split_list(folder / "train.txt.bak") == old["train"]
    assert len(report.backups) == 4
    split_dataset(root, "6:2:2", force=True)
    assert (folder / "train.txt.bak1").is_file()  # an older backup is never overwritten


def test_existing_lists_need_force(tmp_path: Path, trees):
    root = trees.make_voc(tmp_path / "voc", n=6)
    split_dataset(root, "6:2:2")
    before = trees.tree_digest(root)
    with pytest.raises(DataError, match=r"ImageSets/Segmentation/train\.txt: split list exists \(and 3 more\); "
                                        r"use --force"):
        split_dataset(root, "8:1:1", seed=1)
    assert trees.tree_digest(root) == before


def test_plain_layout_writes_splits_folder(tmp_path: Path, trees):
    root = trees.make_plain(tmp_path / "plain", n=5)
    split_dataset(root, "3:1:1")
    assert sorted(p.name for p in (root / "splits").iterdir()) == [".segkd-outputs", "test.txt", "train.txt",
                                                                  "trainval.txt", "val.txt"]
    assert len(read_split_list(root / "splits" / "train.txt")) == 3


def test_unpaired_files_are_reported_and_left_out(tmp_path: Path, trees):
    root = trees.make_voc(tmp_path / "voc", n=8)
    (root / "SegmentationClass" / "img_003.png").unlink()
    trees.write_image(root / "JPEGImages" / "lonely.jpg", 1)
    (root / "SegmentationClass" / "orphan.png").write_bytes((root / "SegmentationClass" / "img_000.png").read_bytes())
    report = split_dataset(root, "6:2:2")
    assert report.images_only == ["img_003.jpg", "lonely.jpg"] and report.masks_only == ["orphan.png"]
    listed = {s for v in report.lists.values() for s in v}
    assert len(listed) == 7 and "img_003" not in listed and "orphan" not in listed


def test_stratify_puts_a_rare_class_in_every_split(tmp_path: Path, trees):
    n = 20
    masks = {i: trees.class_mask(i, classes=(0, 1)) for i in range(n)}
    rare = [2, 3, 4]  # adjacent stems: a plain shuffle often leaves a split without class 2
    for i in rare:
        masks[i] = trees.class_mask(i, classes=(0, 1, 2))
    for seed in range(5):
        root = trees.make_voc(tmp_path / f"voc{seed}", n=n, masks=masks)
        report = split_dataset(root, "6:2:2", seed=seed, stratify=True)
        assert [len(v) for v in report.lists.values()] == [12, 4, 4]
        for split, stems in report.lists.items():
            assert sum(f"img_{i:03d}" in stems for i in rare) == 1, split
        assert report.absent() == {"train": [], "val": [], "test": []}


def test_stratified_assignment_keeps_counts_and_proportions():
    rng = np.random.default_rng(0)
    present = np.zeros((300, 4), bool)
    present[:, 0] = True
    present[:, 1] = rng.random(300) < 0.5
    present[:, 2] = rng.random(300) < 0.1
    present[:, 3] = rng.random(300) < 0.03
    parts = stratified_assignment(present, [180, 60, 60], seed=0)
    assert [len(p) for p in parts] == [180, 60, 60]
    assert sorted(np.concatenate(parts).tolist()) == list(range(300))
    for k in (1, 2, 3):
        total = present[:, k].sum()
        for p, share in zip(parts, (0.6, 0.2, 0.2)):
            assert abs(present[p, k].sum() - share * total) <= 1.5


def test_pixel_shares_and_absent_classes(tmp_path: Path, trees):
    masks = {i: trees.class_mask(i, classes=(0, 1)) for i in range(5)}
    root = trees.make_voc(tmp_path / "voc", n=5, masks=masks)
    (root / "classes.txt").write_text("bg\nfg\nrare\n")
    report = split_dataset(root, "3:1:1")
    assert report.classes == ["bg", "fg", "rare"]
    assert report.pixel_shares("train") == pytest.approx([40 / 48, 8 / 48, 0.0])
    assert report.absent() == {"train": ["rare"], "val": ["rare"], "test": ["rare"]}


def test_large_datasets_are_split_without_reading_files(tmp_path: Path, monkeypatch):
    root = tmp_path / "plain"
    for folder, ext in (("images", ".jpg"), ("masks", ".png")):
        (root / folder).mkdir(parents=True)
        for i in range(12):
            (root / folder / f"{i:04d}{ext}").touch()  # zero bytes: any read would fail
    monkeypatch.setattr(split_module, "PIXEL_SHARE_LIMIT", 10)
    report = split_dataset(root, "6:2:2")
    assert report.pixels is None and "skipped for 12 pairs > 10" in report.stats_note
    assert [len(v) for v in report.lists.values()] == [7, 3, 2]  # 7.2, 2.4, 2.4: the spare one goes to val (tie)


def test_stratify_with_a_corrupt_mask_writes_nothing(tmp_path: Path, trees):
    root = trees.make_voc(tmp_path / "voc", n=6)
    (root / "SegmentationClass" / "img_004.png").write_bytes(b"broken")
    before = trees.tree_digest(root)
    with pytest.raises(DataError, match=r"SegmentationClass/img_004\.png: unreadable mask"):
        split_dataset(root, "6:2:2", stratify=True)
    assert trees.tree_digest(root) == before


def test_cityscapes_is_refused(tmp_path: Path, trees):
    root = trees.make_cityscapes(tmp_path / "cs", train_ids=True)
    before = trees.tree_digest(root)
    with pytest.raises(DataError, match=r"cityscapes splits are folders"):
        split_dataset(root, "6:2:2")
    assert trees.tree_digest(root) == before


def test_bad_ratio_changes_nothing(tmp_path: Path, trees):
    root = trees.make_voc(tmp_path / "voc", n=4)
    before = trees.tree_digest(root)
    with pytest.raises(SegkdError, match=r"ratio '1:1:1:1'"):
        split_dataset(root, "1:1:1:1")
    assert trees.tree_digest(root) == before
