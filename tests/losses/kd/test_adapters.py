import pytest
import torch
from torch import nn

from segkd.errors import ConfigError
from segkd.losses.kd.adapters import CBAM, FeatureEnhancement, build_adapter


@pytest.mark.parametrize("channels, hidden", [(64, 4), (128, 8), (320, 20), (512, 32), (8, 1)])
def test_cbam_hidden_width(channels, hidden):
    assert CBAM(channels).channel.mlp[0].out_channels == hidden


def test_cbam_gates_keep_shape_and_bound():
    x = torch.randn(2, 16, 5, 7)
    cbam = CBAM(16)
    y = cbam(x)
    assert y.shape == x.shape
    assert (y.abs() <= x.abs() + 1e-6).all()  # gates are in (0, 1)


def test_fef_shape_and_layers():
    fef = FeatureEnhancement(32, 64, mid_channels=64)
    y = fef(torch.randn(2, 32, 8, 8))
    assert y.shape == (2, 64, 8, 8)
    assert fef.reduce[0].kernel_size == (1, 1) and fef.expand[0].kernel_size == (3, 3)
    assert fef.reduce[0].bias is None and fef.expand[0].bias is None
    # SEKD B0 -> B2: 676,112 parameters for the 4 stage adapters (spec sekd.md §2.1)
    total = sum(
        p.numel()
        for i, o in zip([32, 64, 160, 256], [64, 128, 320, 512])
        for p in FeatureEnhancement(i, o).parameters()
    )
    assert total == 676_112


def test_embedding_projections_param_count():
    total = sum(
        p.numel()
        for i, o in zip([32, 64, 160, 256], [64, 128, 320, 512])
        for p in build_adapter("conv1x1", (1, 16, i), (1, 16, o)).parameters()
    )
    assert total == 193_536  # spec sekd.md §2.1


def test_build_adapter_kinds():
    assert isinstance(build_adapter("none", (1, 3, 4, 4), (1, 9, 4, 4)), nn.Identity)
    assert isinstance(build_adapter("conv1x1_if_needed", (1, 3, 4, 4), (1, 3, 8, 8)), nn.Identity)
    assert isinstance(build_adapter("conv1x1_if_needed", (1, 3, 4, 4), (1, 9, 8, 8)), nn.Conv2d)
    assert isinstance(build_adapter("fef", (1, 3, 4, 4), (1, 9, 8, 8)), FeatureEnhancement)


def test_build_adapter_errors():
    with pytest.raises(ConfigError, match="unknown adapter kind 'mlp'"):
        build_adapter("mlp", (1, 3, 4, 4), (1, 3, 4, 4))
    with pytest.raises(ConfigError, match="needs a B×C×H×W student tap"):
        build_adapter("fef", (1, 16, 3), (1, 16, 6))
