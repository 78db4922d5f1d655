"""Parity checks: criteria per precision, and a perturbed graph is caught."""

import numpy as np
import pytest
import onnx
from onnx import numpy_helper

from segkd.deploy.export import export_onnx
from segkd.deploy.loading import load_model
from segkd.deploy.onnx_model import OnnxModel
from segkd.deploy.verify import MIN_AGREEMENT, TOLERANCE, _compare, parity_inputs, synthetic_image, verify_onnx


def perturb_weights(path, scale=3.0):
    """Scale the largest initializer of an ONNX file in place (a broken export)."""
    proto = onnx.load(str(path))
    init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * scale, init.name))
    onnx.save(proto, str(path))


def test_synthetic_image_is_a_varied_rgb_picture():
    img = synthetic_image(40, 60, seed=1)
    assert img.shape == (40, 60, 3) and img.dtype == np.uint8
    assert img.std() > 10 and not np.array_equal(img, synthetic_image(40, 60, seed=2))


def test_parity_inputs_follow_the_dynamic_axes():
    real = [np.zeros((3, 32, 32), np.float32)]
    shapes = {k: v.shape for k, v in parity_inputs(real, (32, 32), ["batch", "height", "width"], 4, "fp32").items()}
    assert shapes == {"real image 1": (1, 3, 32, 32), "random": (1, 3, 32, 32), "random, batch 2": (2, 3, 32, 32),
                      "random at 40×44": (1, 3, 40, 44)}
    assert list(parity_inputs(real, (32, 32), ["batch"], 4, "int8")) == ["real image 1"]


def test_random_inputs_are_normalised_pixels():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = parity_inputs([], (64, 64), [], 4, "fp32", mean=mean, std=std)["random"]
    pixels = x * np.float32(std).reshape(1, 3, 1, 1) + np.float32(mean).reshape(1, 3, 1, 1)
    assert pixels.min() >= 0 and pixels.max() <= 1 and 0.45 < pixels.mean() < 0.55
    assert 0 <= parity_inputs([], (8, 8), [], 4, "fp32")["random"].min()  # x/255 models: plain [0, 1]


def test_fp32_tolerance_scales_with_the_logits():
    """Trained models have logits in the tens; fp32 kernels summing in another order differ by ~1e-4 relative."""
    ref = np.zeros((1, 2, 4, 4), np.float32)
    ref[:, 0] = 40.0
    got = ref + 2e-3
    case = _compare("x", ref, got, False, "fp32")
    assert case.tolerance == pytest.approx(0.04) and case.max_abs <= case.tolerance
    small = _compare("x", ref / 100, ref / 100 + 2e-3, False, "fp32")
    assert small.tolerance == pytest.approx(1e-3) and small.max_abs > small.tolerance


def test_criteria_table():
    assert TOLERANCE["fp32"] == 1e-3 and MIN_AGREEMENT["fp32"] == 99.9
    ref = np.zeros((1, 2, 4, 4), np.float32)
    ref[:, 0] = 5.0
    ref[0, 1, 0, 0] = 5.001  # a near-tie pixel
    got = ref.copy()
    got[0, 1, 0, 0] = 4.999  # flips the near tie only
    fp32 = _compare("x", ref, got, False, "fp32")
    assert fp32.agreement < 100 and fp32.max_abs <= fp32.tolerance
    fp16 = _compare("x", ref, got, False, "fp16")  # near ties are not decisive at fp16 tolerance
    assert fp16.agreement == 100.0 and fp16.tolerance == pytest.approx(TOLERANCE["fp16"] * 5.001)


def test_perturbed_graph_fails_verification(tiny_ckpt, tmp_path):
    loaded = load_model(tiny_ckpt)
    result = export_onnx(loaded.model, loaded.meta, tmp_path / "m.onnx")
    perturb_weights(result.path)
    inputs = parity_inputs([], (32, 32), [], 4, "fp32")
    report = verify_onnx(OnnxModel(result.path), loaded.model, inputs, "fp32")
    assert not report.passed
    assert any("max |Δlogit|" in f for f in report.failures)
    assert "random" in report.failures[0]
