import numpy as np
import pytest
import torch

from segkd.errors import JobFailed
from segkd.losses import build_loss
from segkd.losses.kd.adapters import FeatureEnhancement
from segkd.losses.kd.sekd_feature import random_box_mask


def np_quarter(x):
    """Bilinear ×0.25 without align_corners on a side divisible by 4: output i samples input 4i + 1.5."""
    b, c, h, w = x.shape
    out = np.empty((b, c, h // 4, w // 4))
    for i in range(h // 4):
        for j in range(w // 4):
            out[:, :, i, j] = x[:, :, 4 * i + 1 : 4 * i + 3, 4 * j + 1 : 4 * j + 3].mean(axis=(2, 3))
    return out


def test_align_is_mse_at_quarter_size_averaged_over_stages(rng, tensor):
    pairs = [(rng.normal(size=(2, 3, 8, 8)), rng.normal(size=(2, 3, 8, 8))),
             (rng.normal(size=(2, 5, 4, 8)), rng.normal(size=(2, 5, 4, 8)))]
    expected = np.mean([((np_quarter(s) - np_quarter(t)) ** 2).mean() for s, t in pairs])
    _, weight, loss = build_loss({"loss": "sekd_align", "weight": 0.2})
    got = loss([tensor(s) for s, _ in pairs], [tensor(t) for _, t in pairs]).item()
    assert weight == 0.2
    assert got == pytest.approx(expected, rel=1e-5)


def test_masked_drops_one_box():
    _, _, loss = build_loss({"loss": "sekd_masked"})
    s, t = torch.ones(3, 4, 10, 10), torch.zeros(3, 4, 10, 10)
    # the 3×3 box of ones is zeroed, the rest (1 - 9/100 of the elements) differs by 1
    assert loss(s, t).item() == pytest.approx(1 - 9 / 100, rel=1e-6)


def test_masked_teacher_unmasked():
    _, _, loss = build_loss({"loss": "sekd_masked"})
    s, t = torch.zeros(2, 1, 10, 10), torch.ones(2, 1, 10, 10)
    assert loss(s, t).item() == pytest.approx(1.0)


def test_random_box_mask_geometry():
    torch.manual_seed(0)
    mask = random_box_mask(torch.zeros(16, 3, 20, 10), ratio=0.3)
    assert mask.shape == (16, 1, 20, 10)
    for m in mask[:, 0]:
        rows, cols = torch.nonzero(m == 0, as_tuple=True)
        assert len(rows) == 6 * 3
        assert rows.max() - rows.min() == 5 and cols.max() - cols.min() == 2
        assert rows.max() < 20 - 1 or cols.max() < 10 - 1  # the corner never reaches the far edge
    assert len({tuple(torch.nonzero(m[0] == 0)[0].tolist()) for m in mask}) > 1  # random positions


def test_context_matches_hand_computed(rng, tensor):
    s, t = rng.normal(size=(2, 3, 2, 2)), rng.normal(size=(2, 3, 2, 2))

    def gram_norm(x):
        out = np.empty((2, 3, 3))
        for b in range(2):
            f = x[b].reshape(3, -1)
            g = f @ f.T
            out[b] = g / np.linalg.norm(g, axis=0, keepdims=True)  # each column to unit length
        return out

    expected = ((s - t) ** 2).mean() + ((gram_norm(s) - gram_norm(t)) ** 2).mean()
    _, _, loss = build_loss({"loss": "sekd_context"})
    assert loss(tensor(s), tensor(t)).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["sekd_align", "sekd_masked", "sekd_context"])
def test_sekd_feature_builds_fef_to_teacher_width(name):
    _, _, loss = build_loss({"loss": name, "mid_channels": 16})
    fef = loss.build_adapter((2, 32, 16, 16), (2, 64, 32, 32))
    assert isinstance(fef, FeatureEnhancement) and fef.reduce[0].out_channels == 16
    s, t = torch.randn(2, 32, 16, 16), torch.randn(2, 64, 32, 32)  # teacher resized to 16×16
    loss(fef(s), t).backward()
    assert fef.expand[0].weight.grad.abs().sum() > 0


def test_sekd_feature_nan_guard():
    _, _, loss = build_loss({"loss": "sekd_context"})
    with pytest.raises(JobFailed):
        loss(torch.full((1, 2, 4, 4), float("nan")), torch.zeros(1, 2, 4, 4))
