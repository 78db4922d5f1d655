import numpy as np
import pytest
import torch
from torch import nn

from segkd.errors import JobFailed
from segkd.losses import build_loss
from segkd.losses.kd.adapters import RandomConv1x1


def np_standardize(x, eps=1e-5):
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            m = x[b, c].mean()
            v = ((x[b, c] - m) ** 2).mean()
            out[b, c] = (x[b, c] - m) / np.sqrt(v + eps)
    return out


def np_nfd_pair(s, t):
    d = np_standardize(t) - np_standardize(s)
    per_sample = [np.sqrt((d[b] ** 2).sum()) for b in range(d.shape[0])]
    return np.mean(per_sample) / (s.shape[-2] * s.shape[-1])


def test_nfd_paper_sums_pairs(rng, tensor):
    pairs = [(rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 4, 4)) * 3 + 1) for _ in range(2)]
    pairs.append((rng.normal(size=(2, 5, 2, 3)), rng.normal(size=(2, 5, 2, 3))))
    _, weight, loss = build_loss({"loss": "nfd", "weight": 5.0})
    got = loss([tensor(s) for s, _ in pairs], [tensor(t) for _, t in pairs]).item()
    assert weight == 5.0
    assert got == pytest.approx(sum(np_nfd_pair(s, t) for s, t in pairs), rel=1e-5)


def test_nfd_paper_ignores_scale_and_shift(rng, tensor):
    s = tensor(rng.normal(size=(2, 3, 4, 4)))
    _, _, loss = build_loss({"loss": "nfd"})
    assert loss(s, s * 7.0 - 2.0).item() == pytest.approx(0.0, abs=1e-5)


def test_nfd_reference_counts_last_pair_unnormalised(rng, tensor):
    pairs = [(rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 4, 4))) for _ in range(3)]
    _, _, loss = build_loss({"loss": "nfd", "mode": "reference"})
    got = loss([tensor(s) for s, _ in pairs], [tensor(t) for _, t in pairs]).item()
    s, t = pairs[-1]
    expected = np.sqrt(((t - s) ** 2).sum()) / 16  # Frobenius norm of the whole batch tensor / (W_s·H_s)
    assert got == pytest.approx(expected, rel=1e-5)


def test_nfd_resizes_teacher(rng, tensor):
    s = rng.normal(size=(1, 2, 3, 3))
    t_const = rng.normal(size=(1, 2, 1, 1))
    _, _, loss = build_loss({"loss": "nfd", "mode": "reference"})
    got = loss(tensor(s), tensor(np.broadcast_to(t_const, (1, 2, 12, 12)).copy())).item()
    expected = np.sqrt(((np.broadcast_to(t_const, s.shape) - s) ** 2).sum()) / 9
    assert got == pytest.approx(expected, rel=1e-5)


def test_nfd_adapters_paper_learned_reference_random():
    _, _, paper = build_loss({"loss": "nfd"})
    a = paper.build_adapter((2, 32, 28, 28), (2, 64, 56, 56))
    assert isinstance(a, nn.Conv2d) and (a.in_channels, a.out_channels) == (32, 64) and a.bias is not None
    same = paper.build_adapter((2, 64, 28, 28), (2, 64, 56, 56))
    assert isinstance(same, nn.Conv2d)  # paper: always a learned adapter

    _, _, ref = build_loss({"loss": "nfd", "mode": "reference"})
    r = ref.build_adapter((2, 32, 28, 28), (2, 64, 56, 56))
    assert isinstance(r, RandomConv1x1) and not list(r.parameters())
    x = torch.randn(1, 32, 4, 4)
    assert r(x).shape == (1, 64, 4, 4)
    assert not torch.allclose(r(x), r(x))  # drawn afresh at every call
    assert isinstance(ref.build_adapter((2, 64, 28, 28), (2, 64, 56, 56)), nn.Identity)


def test_nfd_gradient_trains_adapter(rng, tensor):
    _, _, loss = build_loss({"loss": "nfd"})
    adapter = loss.build_adapter((2, 3, 4, 4), (2, 5, 8, 8))
    s = tensor(rng.normal(size=(2, 3, 4, 4)))
    t = tensor(rng.normal(size=(2, 5, 8, 8)))
    loss(adapter(s), t).backward()
    assert adapter.weight.grad is not None and adapter.weight.grad.abs().sum() > 0


def test_nfd_nan_guard(tensor):
    _, _, loss = build_loss({"loss": "nfd"})
    loss.term = "kd_nfd"
    s = torch.randn(1, 2, 3, 3)
    t = torch.full((1, 2, 3, 3), float("nan"))
    with pytest.raises(JobFailed, match="'kd_nfd' is nan"):
        loss(s, t)
