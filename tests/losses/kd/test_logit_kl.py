import math

import numpy as np
import pytest
import torch

from segkd.errors import JobFailed
from segkd.losses import build_loss
from segkd.losses.kd.logit_kl import softened_kl, standardize_logits


def test_kl_matches_hand_computed(rng, softmax, tensor):
    s, t = rng.normal(size=(2, 3, 2, 3)), rng.normal(size=(2, 3, 2, 3))
    tau = 3.0
    total = 0.0
    for i in range(2):
        for y in range(2):
            for x in range(3):
                qs, qt = softmax(s[i, :, y, x] / tau, 0), softmax(t[i, :, y, x] / tau, 0)
                total += sum(qt[c] * math.log(qt[c] / qs[c]) for c in range(3))
    expected = tau**2 * total / (2 * 2 * 3)
    _, _, loss = build_loss({"loss": "kl", "temperature": tau})
    assert loss(tensor(s), tensor(t)).item() == pytest.approx(expected, rel=1e-5)


def test_softened_kl_is_teacher_targeted(tensor):
    s = tensor([[0.0, 0.0]])
    t = tensor([[math.log(3.0), 0.0]])  # q_t = (0.75, 0.25), q_s = (0.5, 0.5)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert softened_kl(s, t, 1.0, dim=1).item() == pytest.approx(expected, rel=1e-6)


def test_kl_resizes_teacher(rng, tensor):
    s = tensor(rng.normal(size=(1, 3, 4, 4)))
    t = tensor(rng.normal(size=(1, 3, 1, 1))).expand(1, 3, 16, 16).contiguous()
    _, _, loss = build_loss({"loss": "kl"})
    assert loss(s, t).item() == pytest.approx(loss(s, t[..., :4, :4]).item(), rel=1e-6)


def test_kl_inf_guard(tensor):
    _, _, loss = build_loss({"loss": "kl"})
    s = torch.zeros(1, 2, 2, 2)
    t = torch.zeros(1, 2, 2, 2)
    t[0, 0] = float("inf")
    with pytest.raises(JobFailed, match="LogitKLLoss"):
        loss(s, t)


def test_standardized_kl_matches_hand_computed(rng, softmax, tensor):
    s, t = rng.normal(size=(1, 4, 2, 2)) * 3, rng.normal(size=(1, 4, 2, 2))
    z_s = (s - s.mean(1, keepdims=True)) / (s.std(1, ddof=1, keepdims=True) + 1e-7)  # per pixel over classes
    z_t = (t - t.mean(1, keepdims=True)) / (t.std(1, ddof=1, keepdims=True) + 1e-7)
    q_s, q_t = softmax(z_s / 2.0, 1), softmax(z_t / 2.0, 1)
    expected = 4.0 * (q_t * np.log(q_t / q_s)).sum(1).mean()
    _, _, loss = build_loss({"loss": "kl", "temperature": 2.0, "standardize": True})
    assert loss(tensor(s), tensor(t)).item() == pytest.approx(expected, rel=1e-5)


def test_standardized_kl_ignores_an_affine_change_of_the_logits(rng, tensor):
    s, t = tensor(rng.normal(size=(2, 3, 2, 3))), tensor(rng.normal(size=(2, 3, 2, 3)))
    _, _, std_kl = build_loss({"loss": "kl", "standardize": True})
    _, _, plain_kl = build_loss({"loss": "kl"})
    base = std_kl(s, t).item()
    assert std_kl(3.0 * s - 7.0, t).item() == pytest.approx(base, rel=1e-5)
    assert std_kl(s, 0.25 * t + 2.0).item() == pytest.approx(base, rel=1e-5)
    assert plain_kl(3.0 * s - 7.0, t).item() != pytest.approx(plain_kl(s, t).item(), rel=1e-3)  # the plain one moves


def test_standardize_logits_zero_mean_unit_std(rng, tensor):
    z = standardize_logits(tensor(rng.normal(size=(2, 5, 3, 3)) * 4 + 1))
    assert torch.allclose(z.mean(1), torch.zeros(2, 3, 3), atol=1e-5)
    assert torch.allclose(z.std(1), torch.ones(2, 3, 3), atol=1e-5)
