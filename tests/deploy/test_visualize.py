"""Pictures: FastSegFormer's mix types, fastseg's colorize/blend, palette PNGs, the FPS stamp."""

import numpy as np
import pytest
from PIL import Image

import segkd
from segkd.deploy.visualize import blend, colour_mask, cutout, draw_fps, render, save_labels

PALETTE = [[0, 0, 0], [200, 0, 0], [0, 100, 0]]


@pytest.fixture
def scene():
    image = np.full((4, 6, 3), 100, np.uint8)
    labels = np.zeros((4, 6), np.uint8)
    labels[1:3, 2:4] = 1
    labels[0, 0] = 2
    return image, labels


def test_overlay_is_fastsegformer_mix0(scene):
    image, labels = scene
    pic = render(image, labels, PALETTE, "overlay", alpha=0.7)
    assert pic[1, 2].tolist() == [round(0.3 * 100 + 0.7 * 200), 30, 30]  # 0.3·image + 0.7·colour
    assert pic[3, 5].tolist() == [100, 100, 100]  # black background: nothing drawn, the photo keeps its brightness
    ref = np.asarray(Image.blend(Image.fromarray(image), Image.fromarray(colour_mask(labels, PALETTE)), 0.7))
    drawn = labels != 0
    assert np.abs(ref.astype(int) - pic)[drawn].max() <= 1


def test_mask_and_cutout(scene):
    image, labels = scene
    assert render(image, labels, PALETTE, "mask")[0, 0].tolist() == [0, 100, 0]
    cut = render(image, labels, PALETTE, "cutout")
    assert cut[1, 2].tolist() == [100, 100, 100] and cut[3, 5].tolist() == [0, 0, 0]
    assert np.array_equal(cut, cutout(image, labels))
    with pytest.raises(ValueError, match="unknown mix"):
        render(image, labels, PALETTE, "sepia")


def test_fastseg_colorize_and_blend_return_pil_images(scene):
    image, labels = scene
    colours = segkd.colorize(labels, PALETTE)
    assert isinstance(colours, Image.Image) and colours.mode == "RGB" and colours.size == (6, 4)
    assert colours.getpixel((0, 0)) == (0, 100, 0) and colours.getpixel((5, 3)) == (0, 0, 0)
    assert segkd.colorize(np.array([[0, 1, 2]])).getpixel((1, 0)) == (128, 0, 0)  # default: VOC palette
    mixed = segkd.blend(Image.fromarray(image), colours, 0.4)
    assert isinstance(mixed, Image.Image)
    assert mixed.getpixel((0, 0)) == (60, 100, 60)  # 0.6·100 + 0.4·colour where a class is drawn
    assert mixed.getpixel((5, 3)) == (100, 100, 100)  # black: untouched
    assert np.asarray(segkd.blend(image, colour_mask(labels, PALETTE)))[1, 2].tolist() == [150, 50, 50]  # α 0.5
    with pytest.raises(ValueError, match="differ in size"):
        blend(image, colours.resize((3, 2)))


def test_labels_png_is_palette_mode_with_class_colours(scene, tmp_path):
    _, labels = scene
    save_labels(tmp_path / "l.png", labels, PALETTE)
    im = Image.open(tmp_path / "l.png")
    assert im.mode == "P"
    assert np.array_equal(np.asarray(im), labels)
    assert im.getpalette()[:9] == [0, 0, 0, 200, 0, 0, 0, 100, 0]


def test_fps_stamp_changes_pixels():
    frame = np.zeros((48, 64, 3), np.uint8)
    assert draw_fps(frame, 12.5).any() and not frame.any()
