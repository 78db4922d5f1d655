"""The evaluator against hand-computed results with the tiny deterministic fake models of conftest.py."""

import numpy as np
import pytest
import torch

from segkd.data.transforms import Preprocess
from segkd.engine.evaluator import Predictor, evaluate_model, window_starts
from segkd.errors import ConfigError, DataError

from .conftest import BLUE, GREY, RED, ColourNet, ListDataset, data_cfg, solid

def test_confusion_matrix_by_hand_at_original_resolution(colour_net):
    # image 1: 10×20 all red  -> predicted 0 everywhere; mask: 120 px of 0, 60 of 1, 20 ignored (255)
    # image 2: 30×15 all blue -> predicted 1 everywhere; mask: 300 px of 1, 150 of 2
    # image 3: 7×9 all grey   -> predicted 2 everywhere; mask: 63 px of 2
    m1 = np.zeros((10, 20), np.uint8)
    m1[6:9] = 1
    m1[9] = 255
    m2 = np.ones((30, 15), np.uint8)
    m2[20:] = 2
    m3 = np.full((7, 9), 2, np.uint8)
    ds = ListDataset([(solid(10, 20, RED), m1), (solid(30, 15, BLUE), m2), (solid(7, 9, GREY), m3)])
    metrics = evaluate_model(colour_net, ds, data_cfg(), batch_size=2)
    assert metrics.matrix.tolist() == [[120, 0, 0], [60, 300, 0], [0, 150, 63]]
    assert metrics.class_names == ["red", "blue", "grey"]
    # IoU = tp / (row + col − tp): red 120/180, blue 300/510, grey 63/213
    assert metrics.iou.tolist() == pytest.approx([120 / 180, 300 / 510, 63 / 213])
    assert metrics.aAcc == pytest.approx(483 / 693)


def test_letterbox_restore_on_a_non_square_image(colour_net):
    # 20×40: left half red, right half blue. Letterboxed to 32×32 the image is 16×32 with 8 grey rows above
    # and below, which the model calls "grey" (2): a restore that kept the padding would show class 2.
    image = np.concatenate([solid(20, 20, RED), solid(20, 20, BLUE)], axis=1)
    probs = Predictor(colour_net, Preprocess.from_config(data_cfg()), device=torch.device("cpu"))([image])[0]
    assert probs.shape == (3, 20, 40)
    pred = probs.argmax(0).numpy()
    assert (pred[:, :19] == 0).all() and (pred[:, 21:] == 1).all()
    assert colour_net.seen == [(1, 3, 32, 32)]


def test_flip_tta_is_invariant_for_a_flip_equivariant_model(colour_net, noise_image):
    pre = Preprocess.from_config(data_cfg())
    plain = Predictor(colour_net, pre, device=torch.device("cpu"))([noise_image])[0]
    flipped = Predictor(colour_net, pre, device=torch.device("cpu"), flip=True)([noise_image])[0]
    assert torch.allclose(plain, flipped, atol=1e-6)


def test_flip_tta_averages_with_the_mirrored_pass(noise_image):
    net = ColourNet(ramp=5.0)  # position-dependent: not flip-equivariant
    pre = Preprocess.from_config(data_cfg(resize="resize"))
    got = Predictor(net, pre, device=torch.device("cpu"), flip=True)([noise_image])[0]
    x = torch.from_numpy(pre(noise_image)[0])[None]
    want = (net(x).softmax(1) + net(x.flip(-1)).softmax(1).flip(-1)) / 2
    want = torch.nn.functional.interpolate(want, size=(45, 70), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, Predictor(net, pre, device=torch.device("cpu"))([noise_image])[0], atol=1e-3)


def test_multi_scale_inputs_follow_the_size_divisor(colour_net, noise_image):
    colour_net.size_divisor = 8
    pre = Preprocess.from_config(data_cfg())
    probs = Predictor(colour_net, pre, device=torch.device("cpu"), scales=(0.75, 1.0, 1.5))([noise_image])[0]
    assert colour_net.seen == [(1, 3, 24, 24), (1, 3, 32, 32), (1, 3, 48, 48)]
    assert probs.shape == (3, 45, 70) and torch.allclose(probs.sum(0), torch.ones(45, 70), atol=1e-5)


def test_fixed_size_model_refuses_multi_scale(colour_net):
    colour_net.fixed_input_size = (32, 32)
    with pytest.raises(ConfigError, match=r"ColourNet only runs at 32×32.*use flip TTA or --slide"):
        Predictor(colour_net, Preprocess.from_config(data_cfg()), device=torch.device("cpu"), scales=(0.5, 1.0))


def test_window_starts_cover_the_image():
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(4, 4, 2) == [0]
    assert window_starts(9, 4, 4) == [0, 4, 5]


def test_slide_on_an_image_larger_than_the_input(colour_net, noise_image):
    # A per-pixel model gives the same probabilities whatever window sees a pixel, so sliding must equal
    # one pass over the whole normalised image: any misplaced window would break the equality.
    pre = Preprocess.from_config(data_cfg(input_size=16))
    probs = Predictor(colour_net, pre, device=torch.device("cpu"), slide=True, batch_size=3)([noise_image])[0]
    whole = colour_net(torch.from_numpy(pre.normalize(noise_image))[None]).softmax(1)[0]
    assert probs.shape == (3, 45, 70)
    assert torch.allclose(probs, whole, atol=1e-6)
    windows = colour_net.seen[:-1]
    assert {s[1:] for s in windows} == {(3, 16, 16)}
    # stride int(16·2/3) = 10: rows 0,10,20,29 × cols 0,10,..,50,54 = 4 × 7 windows, in batches of 3
    assert sum(s[0] for s in windows) == 4 * 7


def test_slide_pads_an_image_smaller_than_the_window(colour_net):
    image = solid(5, 7, BLUE)
    probs = Predictor(colour_net, Preprocess.from_config(data_cfg()), device=torch.device("cpu"), slide=True)([image])
    assert probs[0].shape == (3, 5, 7) and (probs[0].argmax(0) == 1).all()


def test_evaluate_restores_training_mode_and_checks_the_dataset(colour_net):
    colour_net.train()
    evaluate_model(colour_net, ListDataset([(solid(8, 8, RED), np.zeros((8, 8), np.uint8))]), data_cfg())
    assert colour_net.training
    with pytest.raises(DataError, match="no images"):
        evaluate_model(colour_net, ListDataset([]), data_cfg())


def test_absent_modes_and_tta_through_evaluate(colour_net):
    ds = ListDataset([(solid(8, 8, RED), np.zeros((8, 8), np.uint8))])  # only class 0 present
    nan = evaluate_model(colour_net, ds, data_cfg(), flip=True, tta_scales=(0.5, 1.0))
    zero = evaluate_model(colour_net, ds, data_cfg(), absent="zero")
    assert nan.mIoU == 1.0 and np.isnan(nan.iou[1:]).all()
    assert zero.mIoU == pytest.approx(1 / 3)
