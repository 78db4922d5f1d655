"""read_image, read_mask and classes.txt: values, channel order, and errors that name the file."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from segkd.data.io import read_class_file, read_classes, read_image, read_mask, read_palette, write_classes, write_mask
from segkd.errors import DataError


def test_read_image_is_rgb(tmp_path: Path):
    bgr = np.zeros((3, 4, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    image = read_image(tmp_path / "red.png")
    assert image.shape == (3, 4, 3) and image.dtype == np.uint8
    assert (image[..., 0] == 200).all() and (image[..., 2] == 0).all()


def test_read_image_grey_becomes_three_channels(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "g.png"), np.full((2, 5), 77, np.uint8))
    assert read_image(tmp_path / "g.png").shape == (2, 5, 3)


@pytest.mark.parametrize("content, why", [(b"not a jpeg at all", "not a decodable"), (b"", "not a decodable")])
def test_read_image_corrupt_names_file(tmp_path: Path, content: bytes, why: str):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"bad\.jpg: unreadable image \({why}"):
        read_image(path)


def test_read_image_missing(tmp_path: Path):
    with pytest.raises(DataError, match=r"nope\.jpg: unreadable image \(file not found\)"):
        read_image(tmp_path / "nope.jpg")


def test_palette_mask_reads_indices_not_colours(tmp_path: Path):
    mask = np.array([[0, 1], [2, 3]], np.uint8)
    write_mask(tmp_path / "m.png", mask, [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]])
    assert Image.open(tmp_path / "m.png").mode == "P"
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)


def test_grey_and_grey_rgb_masks(tmp_path: Path):
    mask = np.array([[0, 4], [255, 1]], np.uint8)
    write_mask(tmp_path / "l.png", mask)
    cv2.imwrite(str(tmp_path / "rgb.png"), np.stack([mask] * 3, -1))
    np.testing.assert_array_equal(read_mask(tmp_path / "l.png"), mask)
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png"), mask)


def test_colour_mask_is_an_error(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "c.png"), np.array([[[0, 0, 128], [0, 128, 0]]], np.uint8))
    with pytest.raises(DataError, match=r"c\.png: mask is a colour \(RGB\) image"):
        read_mask(tmp_path / "c.png")


def test_16bit_mask(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "ok.png"), np.array([[0, 3]], np.uint16))
    cv2.imwrite(str(tmp_path / "big.png"), np.array([[0, 300]], np.uint16))
    np.testing.assert_array_equal(read_mask(tmp_path / "ok.png"), [[0, 3]])
    with pytest.raises(DataError, match=r"big\.png: mask value 300"):
        read_mask(tmp_path / "big.png")


def test_corrupt_and_missing_mask(tmp_path: Path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"bad\.png: unreadable mask"):
        read_mask(tmp_path / "bad.png")
    with pytest.raises(DataError, match=r"gone\.png: missing mask"):
        read_mask(tmp_path / "gone.png")


def test_classes_txt_names_and_colours(tmp_path: Path):
    (tmp_path / "classes.txt").write_text("# defects\nbackground 0 0 0\n\nwind scarring 128 128 0  # streaks\n")
    assert read_classes(tmp_path) == ["background", "wind scarring"]
    assert read_palette(tmp_path) == [[0, 0, 0], [128, 128, 0]]


def test_classes_txt_names_only_and_absent(tmp_path: Path):
    assert read_classes(tmp_path) is None
    write_classes(tmp_path, ["a", "b c"])
    assert read_class_file(tmp_path) == (["a", "b c"], None)


def test_classes_txt_roundtrip_with_palette(tmp_path: Path):
    write_classes(tmp_path, ["bg", "x"], [[0, 0, 0], [1, 2, 3]])
    assert read_class_file(tmp_path) == (["bg", "x"], [[0, 0, 0], [1, 2, 3]])


@pytest.mark.parametrize("text, message", [
    ("bg 0 0 0\nsunburn\n", "class 'sunburn' has no colour"),
    ("# only a comment\n", "no class names"),
])
def test_classes_txt_errors_name_the_file(tmp_path: Path, text: str, message: str):
    (tmp_path / "classes.txt").write_text(text)
    with pytest.raises(DataError, match=rf"classes\.txt.*{message}"):
        read_classes(tmp_path)
