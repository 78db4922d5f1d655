import math

import numpy as np
import pytest
import torch
from torch import nn

from segkd.errors import JobFailed
from segkd.losses import build_loss


def np_cwd(s, t, softmax, tau):
    n, c, h, w = s.shape
    total = 0.0
    for i in range(n):
        for ch in range(c):
            ps = softmax(s[i, ch].reshape(-1) / tau, 0)
            pt = softmax(t[i, ch].reshape(-1) / tau, 0)
            total += sum(pt[j] * math.log(pt[j] / ps[j]) for j in range(h * w))
    return tau**2 * total / (n * c)


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_cwd_matches_mmrazor_formula(rng, softmax, tensor, tau):
    s, t = rng.normal(size=(2, 3, 3, 2)) * 2, rng.normal(size=(2, 3, 3, 2)) * 2
    _, _, loss = build_loss({"loss": "cwd", "temperature": tau})
    assert loss(tensor(s), tensor(t)).item() == pytest.approx(np_cwd(s, t, softmax, tau), rel=1e-5)


def test_cwd_invariant_to_per_channel_shift(rng, tensor):
    s = tensor(rng.normal(size=(1, 2, 3, 3)))
    _, _, loss = build_loss({"loss": "cwd"})
    shift = torch.tensor([3.0, -1.0]).view(1, 2, 1, 1)
    assert loss(s, s + shift).item() == pytest.approx(0.0, abs=1e-6)


def test_cwd_adapter_only_when_widths_differ():
    _, _, loss = build_loss({"loss": "cwd"})
    assert isinstance(loss.build_adapter((2, 19, 8, 8), (2, 19, 16, 16)), nn.Identity)
    conv = loss.build_adapter((2, 64, 8, 8), (2, 128, 16, 16))
    assert isinstance(conv, nn.Conv2d) and conv.out_channels == 128


def test_cwd_resizes_teacher(rng, softmax, tensor):
    s = rng.normal(size=(1, 2, 2, 2))
    t_const = rng.normal(size=(1, 2, 1, 1))
    _, _, loss = build_loss({"loss": "cwd"})
    got = loss(tensor(s), tensor(np.broadcast_to(t_const, (1, 2, 6, 6)).copy())).item()
    assert got == pytest.approx(np_cwd(s, np.broadcast_to(t_const, s.shape), softmax, 1.0), rel=1e-5)


def test_cwd_nan_guard():
    _, _, loss = build_loss({"loss": "cwd"})
    with pytest.raises(JobFailed, match="ChannelWiseDivergence"):
        loss(torch.full((1, 2, 2, 2), float("nan")), torch.zeros(1, 2, 2, 2))
