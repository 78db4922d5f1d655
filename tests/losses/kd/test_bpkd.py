import numpy as np
import pytest
import torch

from segkd.errors import ConfigError, JobFailed
from segkd.losses import build_loss
from segkd.losses.kd.bpkd import edge_mask


def square_labels() -> torch.Tensor:
    labels = torch.zeros(1, 6, 6, dtype=torch.long)
    labels[0, 2:4, 2:4] = 1  # a 2×2 square of class 1 on background
    return labels


def test_edge_mask_of_a_square_width_1():
    expected = torch.zeros(1, 6, 6, dtype=torch.bool)
    expected[0, 1:5, 1:5] = True  # the square and the background ring touching it (8-neighbourhood)
    assert torch.equal(edge_mask(square_labels(), width=1), expected)


def test_edge_mask_width_2_reaches_the_border():
    expected = torch.ones(1, 6, 6, dtype=torch.bool)  # every pixel within 2 of the square (Chebyshev)
    assert torch.equal(edge_mask(square_labels(), width=2), expected)


def test_ignored_pixels_are_never_edges_nor_make_them():
    labels = square_labels()
    labels[0, :, 5] = 255  # an ignored column beside background
    mask = edge_mask(labels, width=1, ignore_index=255)
    expected = torch.zeros(1, 6, 6, dtype=torch.bool)
    expected[0, 1:5, 1:5] = True
    assert torch.equal(mask, expected)
    _, _, loss = build_loss({"loss": "bpkd"})
    edge, body = loss.regions(labels)
    assert not (edge & body).any() and not (edge | body)[0, :, 5].any() and int(body.sum()) == 30 - 16


def expected_bpkd(s, t, edge, softmax, tau, body_mode, w_edge, w_body):
    q_s, q_t = softmax(s / tau, 1), softmax(t / tau, 1)
    pixel_kl = (q_t * np.log(q_t / q_s)).sum(1)  # B×H×W
    body = ~edge
    edge_loss = pixel_kl[edge].sum() / edge.sum()
    if body_mode == "pixel":
        body_loss = pixel_kl[body].sum() / body.sum()
    else:
        total = 0.0
        for n in range(s.shape[0]):
            for k in range(s.shape[1]):
                p_s = softmax(s[n, k][body[n]] / tau, 0)  # the class map over this image's body pixels
                p_t = softmax(t[n, k][body[n]] / tau, 0)
                total += (p_t * np.log(p_t / p_s)).sum()
        body_loss = total / (s.shape[0] * s.shape[1])
    return tau**2 * (w_edge * edge_loss + w_body * body_loss)


@pytest.mark.parametrize("body", ["channel", "pixel"])
def test_bpkd_matches_hand_computed(rng, softmax, tensor, body):
    s, t = rng.normal(size=(2, 3, 6, 6)) * 2, rng.normal(size=(2, 3, 6, 6)) * 2
    labels = square_labels().repeat(2, 1, 1)
    labels[1, 4:, :] = 2  # the second image also has a band of class 2 at the bottom
    edge = edge_mask(labels).numpy()
    _, _, loss = build_loss({"loss": "bpkd", "temperature": 2.0, "edge_weight": 3.0, "body_weight": 0.5,
                             "body": body})
    expected = expected_bpkd(s, t, edge, softmax, 2.0, body, 3.0, 0.5)
    assert loss(tensor(s), tensor(t), labels=labels).item() == pytest.approx(expected, rel=1e-5)


def test_bpkd_labels_follow_the_logits_size(rng, tensor):
    s, t = tensor(rng.normal(size=(1, 2, 6, 6))), tensor(rng.normal(size=(1, 2, 6, 6)))
    _, _, loss = build_loss({"loss": "bpkd"})
    big = square_labels().repeat_interleave(4, 1).repeat_interleave(4, 2)  # the same map at 24×24
    assert loss(s, t, labels=big).item() == pytest.approx(loss(s, t, labels=square_labels()).item(), rel=1e-6)


def test_bpkd_gradient_reaches_student_only(rng, tensor):
    s = tensor(rng.normal(size=(1, 2, 6, 6))).requires_grad_()
    t = tensor(rng.normal(size=(1, 2, 6, 6))).requires_grad_()
    _, _, loss = build_loss({"loss": "bpkd"})
    loss(s, t, labels=square_labels()).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and torch.isfinite(s.grad).all()
    assert t.grad is None


def test_bpkd_all_ignored_is_zero_not_nan(rng, tensor):
    s = tensor(rng.normal(size=(1, 2, 4, 4))).requires_grad_()
    _, _, loss = build_loss({"loss": "bpkd"})
    value = loss(s, torch.zeros(1, 2, 4, 4), labels=torch.full((1, 4, 4), 255))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(s.grad).all()


def test_bpkd_needs_labels_and_guards_nan(rng, tensor):
    _, _, loss = build_loss({"loss": "bpkd"})
    loss.term = "kd_bpkd"
    s = tensor(rng.normal(size=(1, 2, 6, 6)))
    with pytest.raises(ValueError, match="'kd_bpkd' needs the batch's labels"):
        loss(s, s.clone())
    s[0, 0, 3, 3] = float("inf")
    with pytest.raises(JobFailed, match="kd_bpkd"):
        loss(s, torch.zeros(1, 2, 6, 6), labels=square_labels())


@pytest.mark.parametrize("spec, message", [
    ({"body": "shape"}, "body='shape'"),
    ({"width": 0}, "width=0"),
])
def test_bpkd_bad_options(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_loss({"loss": "bpkd", **spec})
