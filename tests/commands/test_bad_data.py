"""Bad data gets one line naming the file, exit 2, no traceback, and the data tree untouched (`segkd train`)."""

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segkd.cli import app

from testkit import flat, load_test_module

fx = load_test_module("engine_fixtures", "engine/conftest.py")  # registers `tiny_seg`

runner = CliRunner()
LISTS = "ImageSets/Segmentation"


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        digest.update(str(p.relative_to(root)).encode())
        if p.is_file():
            digest.update(p.read_bytes())
    return digest.hexdigest()


def jpeg_bytes() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", noise)[1].tobytes()


def png_bytes(array: np.ndarray) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


def replace_image_with_jpeg(root: Path, data: bytes) -> Path:
    (root / "JPEGImages" / "img001.png").unlink()
    path = root / "JPEGImages" / "img001.jpg"
    path.write_bytes(data)
    return path


def corrupt_jpeg(root):
    return replace_image_with_jpeg(root, b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)


def truncated_jpeg(root):
    data = jpeg_bytes()
    return replace_image_with_jpeg(root, data[: len(data) - 400])  # header intact, the last rows of data gone


def corrupt_png(root):
    path = root / "JPEGImages" / "img002.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    return path


def truncated_png_mask(root):
    path = root / "SegmentationClass" / "img003.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def rgb_mask_off_palette(root):
    path = root / "SegmentationClass" / "img004.png"
    Image.fromarray(np.dstack([np.full((48, 48), v, np.uint8) for v in (10, 200, 30)])).save(path)
    return path


def mask_16bit_out_of_range(root):
    path = root / "SegmentationClass" / "img005.png"
    path.write_bytes(png_bytes(np.full((48, 48), 300, np.uint16)))
    return path


def label_out_of_range(root):
    path = root / "SegmentationClass" / "img006.png"
    path.write_bytes(png_bytes(np.full((48, 48), 7, np.uint8)))
    return path


def size_mismatch(root):
    path = root / "SegmentationClass" / "img007.png"
    path.write_bytes(png_bytes(np.zeros((40, 48), np.uint8)))
    return path


def missing_mask(root):
    (root / "SegmentationClass" / "img000.png").unlink()
    return root / "JPEGImages" / "img000.png"


def empty_split(root):
    path = root / LISTS / "val.txt"
    path.write_text("")
    return path


def escaping_path(root):
    path = root / LISTS / "train.txt"
    path.write_text(path.read_text() + "../../../etc/passwd\n")
    return path


def duplicate_entry(root):
    path = root / LISTS / "train.txt"
    path.write_text(path.read_text() + "img002\n")
    return path


def train_val_overlap(root):
    path = root / LISTS / "val.txt"
    path.write_text(path.read_text() + "img003\n")
    return path


CASES = {
    "corrupt JPEG": (corrupt_jpeg, "unreadable image"),
    "truncated JPEG": (truncated_jpeg, "truncated JPEG file"),
    "corrupt PNG": (corrupt_png, "unreadable image"),
    "truncated PNG mask": (truncated_png_mask, "unreadable mask"),
    "RGB mask off the palette": (rgb_mask_off_palette, "mask is a colour (RGB) image"),
    "16-bit mask out of range": (mask_16bit_out_of_range, "mask value 300 does not fit a uint8 class index"),
    "label >= num_classes": (label_out_of_range, "label value 7 >= num_classes 3"),
    "size mismatch": (size_mismatch, "mask is 40×48 but image img007.png is 48×48"),
    "missing mask": (missing_mask, "missing mask"),
    "empty split": (empty_split, "split 'val' has no images"),
    "escaping path": (escaping_path, "'../../../etc/passwd' leaves the data root"),
    "duplicate entry": (duplicate_entry, "'img002' is listed 2 times"),
    "train/val overlap": (train_val_overlap, "'img003' is also in split 'train'"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("workers", [0, 2])
def test_bad_data_is_one_line_naming_the_file_exit_2_and_the_tree_untouched(tmp_path, case, workers):
    root = fx.make_voc_tree(tmp_path / "voc")
    make_bad, message = CASES[case]
    culprit = make_bad(root)
    before = tree_hash(root)
    result = runner.invoke(app, ["train", "--preset", str(fx.write_preset(tmp_path / "tiny.yaml")), "--data",
                                 str(root), f"project={tmp_path / 'runs'}", f"data.workers={workers}"])
    assert result.exit_code == 2, result.output
    first = result.output.strip().splitlines()[0]
    assert first.startswith("error: ") and str(culprit) in first and message in flat(result), result.output
    assert "Traceback" not in result.output
    assert tree_hash(root) == before
    assert not (tmp_path / "runs").exists()  # refused before the run folder was made


def test_all_problems_are_listed_at_once_first_20_then_a_count(tmp_path):
    root = fx.make_voc_tree(tmp_path / "voc", n_train=24, n_val=2)
    for i in range(24):
        (root / "SegmentationClass" / f"img{i:03d}.png").write_bytes(png_bytes(np.full((48, 48), 9, np.uint8)))
    result = runner.invoke(app, ["train", "--preset", str(fx.write_preset(tmp_path / "tiny.yaml")), "--data",
                                 str(root), f"project={tmp_path / 'runs'}"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert sum("label value 9 >= num_classes 3" in line for line in lines) == 20
    assert "... and 4 more" in result.output and "24 data problem(s) in 26 pairs" in flat(result)
    assert "data.skip_bad=true" in flat(result)


def test_skip_bad_trains_on_the_rest_and_says_how_many(tmp_path):
    root = fx.make_voc_tree(tmp_path / "voc")
    label_out_of_range(root)
    corrupt_png(root)
    result = runner.invoke(app, ["train", "--preset", str(fx.write_preset(tmp_path / "tiny.yaml")), "--data",
                                 str(root), f"project={tmp_path / 'runs'}", "data.skip_bad=true", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    assert "data.skip_bad: 2 of 8 train pairs left out" in flat(result)
    assert "6 train / 4 val images" in flat(result)


def test_eval_split_outside_the_data_root_is_refused(tmp_path):
    root = fx.make_voc_tree(tmp_path / "voc")
    preset = fx.write_preset(tmp_path / "tiny.yaml")
    ok = runner.invoke(app, ["train", "--preset", str(preset), "--data", str(root), f"project={tmp_path / 'runs'}",
                             "train.epochs=1", "name=r"])
    assert ok.exit_code == 0, ok.output
    (tmp_path / "x.txt").write_text("img000\n")
    result = runner.invoke(app, ["eval", "--weights", str(tmp_path / "runs/train/r/weights/best.pt"), "--split",
                                 "../../x", f"project={tmp_path / 'runs'}"])
    assert result.exit_code == 2 and "split '../../x' leaves the data root" in flat(result)
    assert "Traceback" not in result.output
