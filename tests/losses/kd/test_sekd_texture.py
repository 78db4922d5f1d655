import math

import numpy as np
import pytest
import torch
from torch import nn

from segkd.errors import ConfigError, JobFailed
from segkd.losses import build_loss


def np_gaussian():
    ax = np.arange(5) - 2.0
    g = np.exp(-(ax**2) / 2)
    k = np.outer(g, g)
    return k / k.sum()


def np_blur(x, k):
    h, w = x.shape
    p = np.zeros((h + 4, w + 4))
    p[2:-2, 2:-2] = x
    return np.array([[(p[i : i + 5, j : j + 5] * k).sum() for j in range(w)] for i in range(h)])


def np_pyramid(x, levels=2):
    k, out, cur = np_gaussian(), [], x
    for _ in range(levels):
        b = np_blur(cur, k)
        out.append(cur - b)
        h, w = b.shape
        cur = b.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) if min(h, w) >= 2 else b
    return out + [cur]


def np_patches(x):
    """unfold k=4 stride 2 pad 2 -> list of 16-value patches, each standardised (unbiased std)."""
    h, w = x.shape
    p = np.zeros((h + 4, w + 4))
    p[2:-2, 2:-2] = x
    out = []
    for i in range(0, h + 4 - 4 + 1, 2):
        for j in range(0, w + 4 - 4 + 1, 2):
            v = p[i : i + 4, j : j + 4].reshape(-1)
            out.append((v - v.mean()) / (v.std(ddof=1) + 1e-6))
    return np.array(out)


def np_texture(s, t):
    """One stage, B = C = 1 maps."""
    structural = sum(((a - b) ** 2).mean() for a, b in zip(np_pyramid(s), np_pyramid(t)))
    statistical = ((np_patches(s) - np_patches(t)) ** 2).mean()
    return structural + statistical


def test_texture_matches_hand_computed(rng, tensor):
    stages = [(rng.normal(size=(8, 8)), rng.normal(size=(8, 8))), (rng.normal(size=(4, 4)), rng.normal(size=(4, 4)))]
    expected = np.mean([np_texture(s, t) for s, t in stages])
    _, weight, loss = build_loss({"loss": "sekd_texture"})
    got = loss([tensor(s[None, None]) for s, _ in stages], [tensor(t[None, None]) for _, t in stages]).item()
    assert weight == 1.0
    assert got == pytest.approx(expected, rel=1e-5)


def test_texture_on_tokens_equals_maps(rng, tensor):
    s, t = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 4, 4))
    tokens = lambda x: tensor(x).flatten(2).transpose(1, 2)  # B×N×C, N = 16 (a 4×4 grid)
    _, _, loss = build_loss({"loss": "sekd_texture"})
    assert loss(tokens(s), tokens(t)).item() == pytest.approx(loss(tensor(s), tensor(t)).item(), rel=1e-6)


def test_texture_tiny_maps_stop_pooling(tensor, rng):
    _, _, loss = build_loss({"loss": "sekd_texture"})
    s, t = rng.normal(size=(2, 2)), rng.normal(size=(2, 2))
    assert loss(tensor(s[None, None]), tensor(t[None, None])).item() == pytest.approx(np_texture(s, t), rel=1e-5)


def test_texture_projection_adapter():
    _, _, loss = build_loss({"loss": "sekd_texture"})
    proj = loss.build_adapter((2, 256, 32), (2, 1024, 64))
    assert isinstance(proj, nn.Linear) and (proj.in_features, proj.out_features) == (32, 64)
    teacher = torch.randn(2, 1024, 64)
    loss(proj(torch.randn(2, 256, 32)), teacher).backward()  # teacher grid 32×32 resized to 16×16
    assert proj.weight.grad.abs().sum() > 0


def test_texture_non_square_tokens_fail():
    _, _, loss = build_loss({"loss": "sekd_texture"})
    with pytest.raises(ConfigError, match="not a square grid"):
        loss(torch.randn(1, 12, 4), torch.randn(1, 12, 4))


def test_texture_nan_guard():
    _, _, loss = build_loss({"loss": "sekd_texture"})
    with pytest.raises(JobFailed):
        loss(torch.full((1, 1, 4, 4), float("nan")), torch.zeros(1, 1, 4, 4))
