import numpy as np
import pytest
import torch

from segkd.errors import ConfigError, JobFailed
from segkd.losses import build_loss
from segkd.losses.kd.cirkd import pixel_relations, region_embeddings, sample_pixels
from segkd.losses.kd.cirkd_memory import RelationMemory

LABELS = torch.tensor([[[0, 1, 1]], [[1, 255, 0]]])  # 2×1×3: image 0 has class 1 twice, image 1 ignores a pixel


def normalise(x, axis):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def row_kl(sim_s, sim_t, tau, softmax):
    """Σ over the last axis of KL(softmax(t/τ) ‖ softmax(s/τ)), one value per row."""
    q_s, q_t = softmax(sim_s / tau, -1), softmax(sim_t / tau, -1)
    return (q_t * np.log(q_t / q_s)).sum(-1)


def expected_pixel_term(s, t, tau, softmax):
    f_s, f_t = normalise(s.reshape(2, 3, -1), 1), normalise(t.reshape(2, 3, -1), 1)  # B×D×P
    total = 0.0
    for i in range(2):
        for j in range(2):
            total += row_kl(f_s[i].T @ f_s[j], f_t[i].T @ f_t[j], tau, softmax).sum()  # P×P, rows = image i
    return total / (2 * 2 * 3)


def expected_region_term(s, t, tau, softmax):
    f_s, f_t = normalise(s.reshape(2, 3, -1), 1), normalise(t.reshape(2, 3, -1), 1)
    regions = normalise(np.stack([f_t[0, :, 0], f_t[0, :, 1:].mean(1), f_t[1, :, 0], f_t[1, :, 2]]), 1)  # 4×D
    anchors = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2)]  # the valid pixels
    a_s = np.stack([f_s[b, :, p] for b, p in anchors])
    a_t = np.stack([f_t[b, :, p] for b, p in anchors])
    return row_kl(a_s @ regions.T, a_t @ regions.T, tau, softmax).mean()


def test_cirkd_pixel_term_matches_hand_computed(rng, softmax, tensor):
    s, t = rng.normal(size=(2, 3, 1, 3)), rng.normal(size=(2, 3, 1, 3))
    _, _, loss = build_loss({"loss": "cirkd", "region_weight": 0.0, "temperature": 0.5})
    assert loss.label_source is None
    assert loss(tensor(s), tensor(t)).item() == pytest.approx(expected_pixel_term(s, t, 0.5, softmax), rel=1e-5)


def test_cirkd_with_regions_matches_hand_computed(rng, softmax, tensor):
    s, t = rng.normal(size=(2, 3, 1, 3)), rng.normal(size=(2, 3, 1, 3))
    _, _, loss = build_loss({"loss": "cirkd", "temperature": 0.5, "pixel_weight": 2.0, "region_weight": 0.3})
    expected = 2.0 * expected_pixel_term(s, t, 0.5, softmax) + 0.3 * expected_region_term(s, t, 0.5, softmax)
    assert loss(tensor(s), tensor(t), labels=LABELS).item() == pytest.approx(expected, rel=1e-5)


def test_region_embeddings_are_normalised_class_means(tensor):
    feats = tensor(np.arange(18, dtype=float).reshape(2, 3, 1, 3))
    regions, classes = region_embeddings(feats, LABELS, ignore_index=255, num_classes=2)
    assert regions.shape == (4, 3) and classes.tolist() == [0, 1, 0, 1]  # (image, class) order
    mean = feats[0, :, 0, 1:].mean(1)
    assert torch.allclose(regions[1], mean / mean.norm())
    assert torch.allclose(regions.norm(dim=1), torch.ones(4))


@pytest.mark.parametrize("batch", [1, 3])
def test_relation_matrix_shapes(rng, tensor, batch):
    x = tensor(rng.normal(size=(batch, 4, 5, 6)))
    pixels, index = sample_pixels(x, 7)
    assert pixels.shape == (batch, 7, 4) and index.shape == (batch, 7)
    assert pixel_relations(pixels).shape == (batch, batch, 7, 7)
    full, index = sample_pixels(x, 1000)  # more than h·w: every pixel, in order
    assert full.shape == (batch, 30, 4) and torch.equal(index[0], torch.arange(30))
    assert pixel_relations(full).shape == (batch, batch, 30, 30)
    assert torch.equal(full[:, 9], x[:, :, 1, 3])


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("memory", [False, True])
def test_cirkd_gradient_reaches_student_only(rng, tensor, batch, memory):
    s = tensor(rng.normal(size=(batch, 4, 5, 6))).requires_grad_()
    t = tensor(rng.normal(size=(batch, 4, 5, 6))).requires_grad_()
    labels = torch.randint(0, 3, (batch, 10, 12))
    labels[:, :2] = 255
    _, _, loss = build_loss({"loss": "cirkd", "pixels": 8, "memory": memory, "num_classes": 3, "pixel_memory": 20,
                             "region_memory": 4, "pixel_contrast": 6, "region_contrast": 2})
    value = loss(s, t, labels=labels)
    value.backward()
    assert torch.isfinite(value) and s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
    if memory:
        assert loss.bank.pixel_queue.shape == (3, 20, 4) and loss.bank.region_queue.shape == (3, 4, 4)
        assert 0 < int(loss.bank.region_count.sum()) <= 3 * batch


def test_memory_queue_is_fifo_and_bounded(tensor):
    bank = RelationMemory(num_classes=2, dim=1, pixel_size=4, region_size=3, pixels_per_update=2)
    bank.push("region", tensor(np.arange(5.0)[:, None]), torch.zeros(5, dtype=torch.long))
    assert bank.region_count.tolist() == [3, 0] and sorted(bank.region_queue[0, :, 0].tolist()) == [2.0, 3.0, 4.0]
    bank.push("region", tensor([[9.0]]), torch.tensor([0]))  # the oldest (2) goes out
    assert sorted(bank.region_queue[0, :, 0].tolist()) == [3.0, 4.0, 9.0]
    assert bank.sample("region", 2).shape == (2, 1) and bank.sample("pixel", 5).shape == (0, 1)
    classes, images = torch.tensor([1, 1, 1, 0, 1]), torch.tensor([0, 0, 0, 0, 1])
    bank.push_pixels(tensor(np.arange(5.0)[:, None]), classes, images)  # ≤ 2 per (image, class)
    assert bank.pixel_count.tolist() == [1, 3]
    assert sorted(bank.pixel_queue[1, :3, 0].tolist()) == [0.0, 1.0, 4.0]


def test_cirkd_nan_guard_and_options(rng, tensor):
    _, _, loss = build_loss({"loss": "cirkd", "region_weight": 0.0})
    loss.term = "kd_cirkd"
    s = tensor(rng.normal(size=(1, 3, 2, 2)))
    s[0, 0, 0, 0] = float("nan")
    with pytest.raises(JobFailed, match="kd_cirkd"):
        loss(s, torch.ones(1, 3, 2, 2))
    with pytest.raises(ConfigError, match="needs num_classes"):
        build_loss({"loss": "cirkd", "memory": True})
    with pytest.raises(ConfigError, match="regions='gt'"):
        build_loss({"loss": "cirkd", "regions": "gt"})
    assert build_loss({"loss": "cirkd", "regions": "teacher"})[2].label_source == "teacher"


def test_cirkd_adapts_the_student_width():
    _, _, loss = build_loss({"loss": "cirkd"})
    assert isinstance(loss.build_adapter((2, 8, 16, 16), (2, 24, 16, 16)), torch.nn.Conv2d)
    assert isinstance(loss.build_adapter((2, 24, 16, 16), (2, 24, 16, 16)), torch.nn.Identity)
