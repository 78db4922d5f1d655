"""Fixtures for the KD loss tests: small random tensors and a plain-numpy softmax for expected values."""

import numpy as np
import pytest
import torch


def np_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def softmax():
    return np_softmax


def as_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


@pytest.fixture
def tensor():
    return as_tensor
