import numpy as np
import pytest
import torch

from segkd.errors import JobFailed
from segkd.losses import build_loss


def np_attention(x, p=2.0):
    b = x.shape[0]
    q = (np.abs(x) ** p).sum(axis=1).reshape(b, -1)
    return q / np.sqrt((q**2).sum(axis=1, keepdims=True))


def test_at_matches_hand_computed(rng, tensor):
    s, t = rng.normal(size=(2, 3, 3, 3)), rng.normal(size=(2, 7, 3, 3))  # channels may differ
    diff = np_attention(s) - np_attention(t)
    expected = np.mean([np.sqrt((d**2).sum()) for d in diff])
    _, _, loss = build_loss({"loss": "at"})
    assert loss.build_adapter(s.shape, t.shape).__class__.__name__ == "Identity"
    assert loss(tensor(s), tensor(t)).item() == pytest.approx(expected, rel=1e-5)


def test_at_invariant_to_scale(rng, tensor):
    s = tensor(rng.normal(size=(2, 3, 4, 4)))
    _, _, loss = build_loss({"loss": "at"})
    assert loss(s, 5.0 * s).item() == pytest.approx(0.0, abs=1e-6)


def test_at_resizes_teacher(rng, tensor):
    s = rng.normal(size=(1, 2, 2, 2))
    t = np.ones((1, 4, 8, 8))  # uniform attention at any size
    expected = np.sqrt(((np_attention(s) - np_attention(np.ones((1, 4, 2, 2)))) ** 2).sum())
    _, _, loss = build_loss({"loss": "at"})
    assert loss(tensor(s), tensor(t)).item() == pytest.approx(expected, rel=1e-5)


def test_at_nan_guard():
    _, _, loss = build_loss({"loss": "at"})
    with pytest.raises(JobFailed):
        loss(torch.full((1, 2, 2, 2), float("nan")), torch.ones(1, 2, 2, 2))
