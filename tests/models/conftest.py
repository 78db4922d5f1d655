"""Shared model fixtures: models built once per test module, random weights, reference-layout state dicts."""

import pytest
import torch
from torch import nn

from segkd.models import create_model


@pytest.fixture(scope="module")
def build():
    """`build(arch, **options)` -> an eval-mode model with 4 classes, cached per test module (do not mutate)."""
    cache = {}

    def _build(arch, **options):
        key = (arch, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = create_model(arch, num_classes=4, **options).eval()
        return cache[key]

    return _build


@pytest.fixture
def randomize():
    """`randomize(model)`: every parameter and BatchNorm statistic set to distinct random values (seeded)."""

    def _randomize(model):
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1, generator=gen)
                    m.running_var.uniform_(0.5, 1.5, generator=gen)
        return model.eval()

    return _randomize


@pytest.fixture
def to_reference():
    """`to_reference(model, key_map, reshape)`: the model's weights under the reference repository's names.

    `key_map` maps segkd keys to reference keys (non-persistent index buffers included); `reshape(ref_key, t)`
    returns the tensor in the reference's shape.
    """

    def _to_reference(model, key_map, reshape=lambda key, t: t):
        tensors = dict(model.named_buffers()) | model.state_dict()
        return {ref: reshape(ref, tensors[ours].clone()) for ours, ref in key_map.items()}

    return _to_reference
