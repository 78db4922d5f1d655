import numpy as np
import pytest

from segkd.losses import build_loss
from segkd.losses.kd.dist import pearson_correlation


def expected_dist(s, t, softmax, tau=1.0, beta=1.0, gamma=1.0):
    k = s.shape[1]
    y_s = softmax(s / tau, 1).transpose(0, 2, 3, 1).reshape(-1, k)  # pixels as samples
    y_t = softmax(t / tau, 1).transpose(0, 2, 3, 1).reshape(-1, k)
    inter = 1 - np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(y_s, y_t)])
    intra = 1 - np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(y_s.T, y_t.T)])
    return tau**2 * (beta * inter + gamma * intra)


@pytest.mark.parametrize("tau, beta, gamma", [(1.0, 1.0, 1.0), (2.0, 2.0, 0.5)])
def test_dist_matches_hand_computed(rng, softmax, tensor, tau, beta, gamma):
    s, t = rng.normal(size=(2, 3, 2, 3)) * 2, rng.normal(size=(2, 3, 2, 3)) * 2
    _, _, loss = build_loss({"loss": "dist", "temperature": tau, "beta": beta, "gamma": gamma})
    expected = expected_dist(s, t, softmax, tau, beta, gamma)
    assert loss(tensor(s), tensor(t)).item() == pytest.approx(expected, rel=1e-5)


def test_pearson_by_hand(tensor):
    a = tensor([[1.0, 2.0, 3.0], [1.0, 0.0, 1.0]])
    b = tensor([[2.0, 4.0, 6.0], [0.0, 1.0, 0.0]])
    assert pearson_correlation(a, b).tolist() == pytest.approx([1.0, -1.0], abs=1e-6)


def test_dist_zero_for_equal_logits_and_invariant_to_a_class_shift(rng, tensor):
    z = tensor(rng.normal(size=(2, 4, 3, 3)))
    _, _, loss = build_loss({"loss": "dist"})
    assert loss(z, z.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(z + 5.0, z).item() == pytest.approx(0.0, abs=1e-6)  # softmax ignores a shift over classes
