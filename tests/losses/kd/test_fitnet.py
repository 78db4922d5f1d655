import numpy as np
import pytest
import torch
from torch import nn

from segkd.errors import JobFailed
from segkd.losses import build_loss


def test_fitnet_is_mse_after_adapter(rng, tensor):
    s, t = rng.normal(size=(2, 3, 2, 2)), rng.normal(size=(2, 3, 2, 2))
    _, _, loss = build_loss({"loss": "fitnet"})
    assert loss(tensor(s), tensor(t)).item() == pytest.approx(((s - t) ** 2).mean(), rel=1e-5)


def test_fitnet_adapter_maps_width(rng, tensor):
    _, _, loss = build_loss({"loss": "fitnet"})
    adapter = loss.build_adapter((2, 3, 4, 4), (2, 6, 8, 8))
    assert isinstance(adapter, nn.Conv2d) and (adapter.in_channels, adapter.out_channels) == (3, 6)
    with torch.no_grad():
        adapter.weight.zero_()
        adapter.bias.fill_(1.0)
    s = tensor(rng.normal(size=(2, 3, 4, 4)))
    t = torch.full((2, 6, 8, 8), 3.0)
    assert loss(adapter(s), t).item() == pytest.approx(4.0)  # (1 - 3)² everywhere


def test_fitnet_token_adapter_is_linear():
    _, _, loss = build_loss({"loss": "fitnet"})
    adapter = loss.build_adapter((2, 16, 32), (2, 64, 64))
    assert isinstance(adapter, nn.Linear) and (adapter.in_features, adapter.out_features) == (32, 64)


def test_fitnet_nan_guard():
    _, _, loss = build_loss({"loss": "fitnet"})
    with pytest.raises(JobFailed):
        loss(torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2, 2), float("inf")))
