import math

import numpy as np
import pytest

from segkd.errors import ConfigError
from segkd.losses import build_loss


def expected_pkl(s, t, softmax, temperature=2.0, k1=0.5, reference=False):
    b, k, h, w = s.shape
    kl = 0.0
    for i in range(b):
        for y in range(h):
            for x in range(w):
                qs = softmax(s[i, :, y, x] / temperature, 0)
                qt = softmax(t[i, :, y, x] / temperature, 0)
                kl += sum(qt[c] * math.log(qt[c] / qs[c]) for c in range(k))
    kl /= b * h * w
    if reference:
        mse = ((s - t) ** 2).mean() / (h * w)  # raw logits, divided by W·H once more
    else:
        mse = ((softmax(s, 1) - softmax(t, 1)) ** 2).mean()  # class probabilities
    return k1 * temperature**2 * kl + (1 - k1) * mse


@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_pkl_matches_hand_computed(rng, softmax, tensor, mode):
    s, t = rng.normal(size=(2, 3, 2, 2)) * 2, rng.normal(size=(2, 3, 2, 2)) * 2
    _, weight, loss = build_loss({"loss": "pkl", "weight": 0.5, "temperature": 2.0, "k1": 0.5, "mode": mode})
    got = loss(tensor(s), tensor(t)).item()
    assert weight == 0.5
    assert got == pytest.approx(expected_pkl(s, t, softmax, reference=mode == "reference"), rel=1e-5)


def test_pkl_k1_and_temperature(rng, softmax, tensor):
    s, t = rng.normal(size=(1, 4, 3, 2)), rng.normal(size=(1, 4, 3, 2))
    _, _, loss = build_loss({"loss": "pkl", "temperature": 4.0, "k1": 0.8})
    assert loss(tensor(s), tensor(t)).item() == pytest.approx(expected_pkl(s, t, softmax, 4.0, 0.8), rel=1e-5)


def test_pkl_resizes_teacher_to_student(rng, softmax, tensor):
    s = rng.normal(size=(2, 3, 2, 2))
    per_channel = rng.normal(size=(2, 3, 1, 1))
    t_small = np.broadcast_to(per_channel, (2, 3, 2, 2))
    t_big = np.broadcast_to(per_channel, (2, 3, 8, 8))  # spatially constant: any bilinear resize keeps it
    _, _, loss = build_loss({"loss": "pkl"})
    assert loss(tensor(s), tensor(t_big.copy())).item() == pytest.approx(expected_pkl(s, t_small, softmax), rel=1e-5)


def test_pkl_zero_when_equal(tensor, rng):
    z = tensor(rng.normal(size=(2, 4, 3, 3)))
    _, _, loss = build_loss({"loss": "pkl"})
    assert loss(z, z.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_pkl_rejects_unknown_mode():
    with pytest.raises(ConfigError, match="mode='code'"):
        build_loss({"loss": "pkl", "mode": "code"})


@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_pkl_standardize_ignores_an_affine_change_of_the_logits(rng, softmax, tensor, mode):
    s, t = rng.normal(size=(2, 3, 2, 2)), rng.normal(size=(2, 3, 2, 2))
    _, _, loss = build_loss({"loss": "pkl", "mode": mode, "standardize": True})
    base = loss(tensor(s), tensor(t)).item()
    assert loss(tensor(2.5 * s + 4.0), tensor(0.5 * t - 1.0)).item() == pytest.approx(base, rel=1e-5)
    assert base == pytest.approx(expected_pkl(zscore(s), zscore(t), softmax, reference=mode == "reference"), rel=1e-5)


def zscore(x):
    """Each pixel's logits standardised over the classes (unbiased std), by hand."""
    return (x - x.mean(1, keepdims=True)) / (x.std(1, ddof=1, keepdims=True) + 1e-7)
