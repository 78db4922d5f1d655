"""Online augmentation: alignment of image and mask, determinism, sizes, padding labels, config errors.

The ops shared with `segkd augment` (albumentations behind segkd's names) are tested here through the online
builder; the offline command's own behaviour is in test_augment_offline.py.
"""

import pickle

import numpy as np
import pytest

from segkd.config import load_config, preset_names, size_hw
from segkd.data.augment import build_train_transform, list_ops, train_sample
from segkd.errors import ConfigError

COLOURS = np.array([[0, 0, 0], [200, 30, 30], [30, 200, 30], [30, 30, 200]], np.uint8)


def data_cfg(**over):
    cfg = dict(input_size=64, resize="resize", pad_value=128, mask_pad="ignore", ignore_index=255,
               mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    return cfg | over


def blocks(h=96, w=128):
    """A mask of big class blocks and an image painted with each class's colour."""
    mask = np.zeros((h, w), np.uint8)
    mask[: h // 2, w // 2 :] = 1
    mask[h // 2 :, : w // 2] = 2
    mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 3
    return COLOURS[mask], mask


def coords(h=40, w=50):
    """Image whose red = row and green = column, mask = (row + col) % 4: positions can be read back."""
    rows, cols = np.mgrid[:h, :w]
    image = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)
    return image, ((rows + cols) % 4).astype(np.uint8)


def aligned_fraction(image, mask, fill):
    """Share of labelled pixels whose colour is their label's colour (blending at edges aside)."""
    keep = mask != fill
    dist = np.abs(image.astype(int) - COLOURS[np.minimum(mask, 3)].astype(int)).max(-1)
    return (dist[keep] <= 40).mean()


GEOMETRIC = [
    {"op": "random_resized_paste"},
    {"op": "hflip", "p": 1.0},
    {"op": "resize", "size": [48, 80]},
    {"op": "random_scale", "range": [0.5, 2.0]},
    {"op": "random_crop", "size": 64},
    {"op": "affine", "p": 1.0},
    {"op": "vflip", "p": 1.0},
    {"op": "rotate", "limit": 30, "p": 1.0},
    {"op": "random_resized_crop", "scale": [0.3, 1.0]},
    {"op": "elastic", "p": 1.0},
    {"op": "grid_distortion", "p": 1.0},
    {"op": "perspective", "p": 1.0},
]


@pytest.mark.parametrize("spec", GEOMETRIC, ids=lambda s: s["op"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_geometric_ops_keep_image_and_mask_aligned(spec, seed):
    t = build_train_transform([spec], data_cfg(), 64)
    image, mask = t(*blocks(), np.random.default_rng(seed))
    assert image.shape == (64, 64, 3) and mask.shape == (64, 64)
    assert image.dtype == np.uint8 and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1, 2, 3, 255}  # nearest: no blended labels
    assert aligned_fraction(image, mask, 255) > 0.9


def test_hflip_is_exact_and_respects_p():
    image, mask = coords()
    out, m = build_train_transform([{"op": "hflip", "p": 1.0}], data_cfg(input_size=[40, 50]), (40, 50))(
        image, mask, np.random.default_rng(0))
    assert (out == image[:, ::-1]).all() and (m == mask[:, ::-1]).all()
    out, m = build_train_transform([{"op": "hflip", "p": 0.0}], data_cfg(), (40, 50))(image, mask,
                                                                                     np.random.default_rng(0))
    assert (out == image).all() and (m == mask).all()


def test_affine_rotates_about_the_centre():
    image, mask = coords()
    spec = {"op": "affine", "scale": [1, 1], "translate": 0, "rotate": [180, 180], "shear": 0, "p": 1}
    out, m = build_train_transform([spec], data_cfg(), (40, 50))(image, mask, np.random.default_rng(0))
    assert (m == mask[::-1, ::-1]).all()
    assert np.abs(out.astype(int) - image[::-1, ::-1]).max() <= 1


def test_random_crop_takes_a_window_and_pads_small_images():
    image, mask = coords(40, 50)
    t = build_train_transform([{"op": "random_crop", "size": [16, 20]}], data_cfg(), (16, 20))
    out, m = t(image, mask, np.random.default_rng(3))
    top, left = int(out[0, 0, 0]), int(out[0, 0, 1])
    assert (out == image[top : top + 16, left : left + 20]).all()
    assert (m == mask[top : top + 16, left : left + 20]).all()
    out, m = build_train_transform([{"op": "random_crop", "size": 64}], data_cfg(), 64)(image, mask,
                                                                                        np.random.default_rng(0))
    assert (out[:40, :50] == image).all() and (out[40:] == 128).all() and (out[:, 50:] == 128).all()
    assert (m[:40, :50] == mask).all() and (m[40:] == 255).all() and (m[:, 50:] == 255).all()


@pytest.mark.parametrize("mask_pad, fill", [("ignore", 255), ("background", 0)])
def test_paste_canvas_labels_follow_mask_pad(mask_pad, fill):
    spec = {"op": "random_resized_paste", "scale": [0.4, 0.4], "aspect": [1, 1], "pad_value": 100}
    image = np.full((32, 32, 3), 7, np.uint8)
    mask = np.full((32, 32), 2, np.uint8)
    out, m = build_train_transform([spec], data_cfg(mask_pad=mask_pad), 64)(image, mask, np.random.default_rng(0))
    assert (m == 2).sum() == 25 * 25  # int(0.4·64) = 25 on both sides (aspect 1)
    assert ((m == 2) == (out[..., 0] == 7)).all()
    assert set(np.unique(m)) == {2, fill} and set(np.unique(out)) == {7, 100}


def test_random_scale_steps():
    image, mask = coords(40, 40)
    t = build_train_transform([{"op": "random_scale", "range": [0.5, 2.0], "step": 0.5}], data_cfg(), 64)
    sides = {t.ops[0](image, mask, np.random.default_rng(s))[0].shape[0] for s in range(40)}
    assert sides == {20, 40, 60, 80}


def test_colour_ops_by_hand():
    image = np.full((4, 4, 3), 100, np.uint8)
    mask = np.arange(16, dtype=np.uint8).reshape(4, 4)
    rng = np.random.default_rng(0)
    ops = [{"op": "brightness_contrast", "brightness": [0.1, 0.1], "contrast": 0, "p": 1}]  # 100 + 25.5
    out, m = build_train_transform(ops, data_cfg(), 4)(image, mask, rng)
    assert (out == 125).all() and (m == mask).all()
    out, _ = build_train_transform([{"op": "rgb_shift", "shift": [10, 10], "p": 1}], data_cfg(), 4)(image, mask, rng)
    assert (out == 110).all()
    spec = {"op": "color_distort", "brightness": 0.5, "contrast": 0, "saturation": 0, "hue": 0, "p": 0}
    out, _ = build_train_transform([spec], data_cfg(), 4)(image, mask, rng)
    assert (out == image).all()


PHOTOMETRIC = [
    {"op": "hsv_jitter"}, {"op": "rgb_shift", "p": 1}, {"op": "brightness_contrast", "p": 1},
    {"op": "color_distort", "p": 1}, {"op": "hue_saturation_value", "p": 1}, {"op": "gamma", "p": 1},
    {"op": "clahe", "p": 1}, {"op": "gaussian_blur", "blur_limit": [5, 7], "p": 1},
    {"op": "motion_blur", "p": 1}, {"op": "gaussian_noise", "p": 1}, {"op": "jpeg", "quality_range": [10, 20], "p": 1},
    {"op": "coarse_dropout", "hole_height_range": [8, 16], "hole_width_range": [8, 16], "p": 1},
]


@pytest.mark.parametrize("spec", PHOTOMETRIC, ids=lambda s: s["op"])
def test_colour_ops_leave_the_mask_alone(spec):
    image, mask = blocks(64, 64)
    out, m = build_train_transform([spec], data_cfg(), 64)(image, mask, np.random.default_rng(5))
    assert (m == mask).all() and out.shape == image.shape and (out != image).any()


def test_hsv_jitter_with_zero_gains_is_identity_up_to_rounding():
    image, mask = blocks(64, 64)
    out, _ = build_train_transform([{"op": "hsv_jitter", "gains": [0, 0, 0]}], data_cfg(), 64)(
        image, mask, np.random.default_rng(0))
    assert np.abs(out.astype(int) - image).max() <= 3


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_pipeline_is_deterministic_and_sized(name):
    cfg = load_config(name)
    hw = size_hw(cfg.data.input_size)
    small = dict(cfg.data.__dict__, input_size=[hw[0] // 8, hw[1] // 8])
    ops = [dict(op, size=[hw[0] // 8, hw[1] // 8]) if "size" in op else op for op in cfg.augment]
    t = build_train_transform(ops, small, (hw[0] // 8, hw[1] // 8))
    image, mask = blocks(50, 70)
    a = t(image, mask, np.random.default_rng(7))
    b = t(image, mask, np.random.default_rng(7))
    assert a[0].shape == (hw[0] // 8, hw[1] // 8, 3) and a[1].shape == (hw[0] // 8, hw[1] // 8)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    outs = [t(image, mask, np.random.default_rng(s))[0] for s in range(4)]
    assert any((o != outs[0]).any() for o in outs[1:])


def test_fit_step_letterboxes_to_the_input_size():
    image, mask = blocks(32, 64)
    out, m = build_train_transform([], data_cfg(resize="letterbox", mask_pad="background"), 64)(
        image, mask, np.random.default_rng(0))
    assert out.shape == (64, 64, 3)
    assert (out[:16] == 128).all() and (m[:16] == 0).all() and (m[48:] == 0).all()  # 64×32 centred
    assert aligned_fraction(out[16:48], m[16:48], -1) > 0.95


def test_train_sample_normalises():
    cfg = data_cfg(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    t = build_train_transform([{"op": "hflip"}], cfg, 64)
    x, y = train_sample(*blocks(64, 64), np.random.default_rng(0), t, cfg)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == pytest.approx(-1.0) and x.max() <= 1.0


@pytest.mark.parametrize(
    "ops, message",
    [
        ([{"op": "hflip"}, {"op": "hfilp"}], "augment[1]: unknown op 'hfilp', did you mean 'hflip'?"),
        ([{"op": "hflip", "pp": 0.5}], "augment[0]: op 'hflip' has no parameter 'pp', did you mean 'p'?"),
        ([{"op": "random_scale", "range": [2, 1]}], "augment[0]: op 'random_scale': range=[2, 1] is not [low, high]"),
        ([{"op": "affine", "p": 1.5}], "augment[0]: op 'affine': p=1.5 is not a probability"),
        ([{"p": 0.5}], "augment[0]: expected a mapping with an 'op' key"),
        ([{"op": "rotate", "fill": 3}], "augment[0]: op 'rotate' has no parameter 'fill'"),  # segkd sets borders
        ([{"op": "hflip"}, {"op": "jpeg", "quality_range": [200, 300]}],
         "augment[1]: op 'jpeg': quality_range: Value error, All values in (200, 300) must be >= 1 and <= 100"),
        ([{"op": "albumentations", "pipeline": {"x": 1}}], "augment[0]: op 'albumentations': pipeline= must be"),
    ],
)
def test_config_errors_name_the_op(ops, message):
    with pytest.raises(ConfigError) as e:
        build_train_transform(ops, data_cfg(), 64)
    assert message in str(e.value)


def test_op_names():
    """The presets' ops, then the ones `segkd augment` added (one registry for both)."""
    assert set(list_ops()) == {"random_resized_paste", "hflip", "hsv_jitter", "resize", "rgb_shift",
                               "brightness_contrast", "affine", "random_scale", "random_crop", "color_distort",
                               "vflip", "rotate", "random_resized_crop", "elastic", "grid_distortion", "perspective",
                               "hue_saturation_value", "gamma", "clahe", "gaussian_blur", "motion_blur",
                               "gaussian_noise", "jpeg", "coarse_dropout", "albumentations"}


def test_every_op_pickles_into_a_spawned_worker():
    """DataLoader workers under spawn/forkserver (macOS, Windows, a spawned process) unpickle the transform."""
    ops = [{"op": name} for name in list_ops() if name not in ("albumentations", "random_resized_paste")]
    t = build_train_transform(ops, data_cfg(), (64, 64))
    image, mask = blocks(64, 64)
    a, b = t(image, mask, np.random.default_rng(3)), pickle.loads(pickle.dumps(t))(image, mask,
                                                                               np.random.default_rng(3))
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()


def test_geometric_border_pixels_take_the_mask_fill():
    image, mask = blocks(64, 64)
    spec = {"op": "rotate", "limit": [45, 45], "p": 1}
    for mask_pad, fill in (("ignore", 255), ("background", 0)):
        out, m = build_train_transform([spec], data_cfg(mask_pad=mask_pad), 64)(image, mask, np.random.default_rng(0))
        assert m[0, 0] == fill and (out[0, 0] == 128).all()  # the corner comes from outside the image


def test_albumentations_ops_follow_the_rng_only():
    import albumentations as A

    t = build_train_transform([{"op": "gaussian_noise", "p": 1}, {"op": "elastic", "p": 1}], data_cfg(), 64)
    image, mask = blocks(64, 64)
    a = t(image, mask, np.random.default_rng(11))
    A.HorizontalFlip().set_random_seed(5)  # no global albumentations / numpy state is involved
    np.random.seed(123)
    b = t(image, mask, np.random.default_rng(11))
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()


def test_serialised_albumentations_pipeline_is_an_op():
    import albumentations as A

    pipeline = A.to_dict(A.Compose([A.HorizontalFlip(p=1.0), A.ToGray(p=1.0)]))
    t = build_train_transform([{"op": "albumentations", "pipeline": pipeline}], data_cfg(input_size=[40, 50]),
                              (40, 50))
    image, mask = coords()
    out, m = t(image, mask, np.random.default_rng(0))
    assert (m == mask[:, ::-1]).all() and (out[..., 0] == out[..., 1]).all()
