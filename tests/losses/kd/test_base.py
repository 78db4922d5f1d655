import pytest
import torch

from segkd.errors import ConfigError, JobFailed
from segkd.losses import build_loss
from segkd.losses.kd.base import KDLoss, tokens_to_map


def test_tokens_to_map_row_major():
    maps = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    tokens = maps.flatten(2).transpose(1, 2)  # B×N×C
    assert torch.equal(tokens_to_map(tokens), maps)
    assert tokens_to_map(maps) is maps


def test_tokens_to_map_rejects_bad_rank():
    with pytest.raises(ConfigError, match="B×C×H×W or B×N×C"):
        tokens_to_map(torch.zeros(2, 3))


def test_pair_count_mismatch():
    _, _, loss = build_loss({"loss": "fitnet"})
    with pytest.raises(ValueError):
        loss([torch.zeros(1, 1, 2, 2)] * 2, [torch.zeros(1, 1, 2, 2)])


def test_teacher_never_receives_gradient():
    _, _, loss = build_loss({"loss": "fitnet"})
    s = torch.randn(1, 2, 4, 4, requires_grad=True)
    t = torch.randn(1, 2, 8, 8, requires_grad=True)
    loss(s, t).backward()
    assert t.grad is None and s.grad is not None


def test_every_kd_loss_is_a_kdloss():
    for name in ("pkl", "nfd", "kl", "cwd", "at", "fitnet", "sekd_align", "sekd_masked", "sekd_context", "sekd_texture"):
        assert isinstance(build_loss({"loss": name})[2], KDLoss)


LOGIT_LOSSES = ["pkl", "dist"]  # logit-map terms: same class count on both sides, gradient into the student only


@pytest.mark.parametrize("name", LOGIT_LOSSES)
def test_logit_loss_gradient_reaches_student_only(name, rng, tensor):
    s = tensor(rng.normal(size=(1, 3, 2, 2))).requires_grad_()
    t = tensor(rng.normal(size=(1, 3, 2, 2))).requires_grad_()
    _, _, loss = build_loss({"loss": name})
    loss(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


@pytest.mark.parametrize("name", LOGIT_LOSSES)
def test_logit_loss_nan_guard_names_term(name, rng, tensor):
    s = tensor(rng.normal(size=(1, 3, 2, 2)))
    s[0, 1, 1, 1] = float("nan")
    _, _, loss = build_loss({"loss": name})
    loss.term = f"kd_{name}"
    with pytest.raises(JobFailed, match=f"kd_{name}"):
        loss(s, torch.zeros(1, 3, 2, 2))


@pytest.mark.parametrize("name", LOGIT_LOSSES)
def test_logit_loss_needs_same_class_count(name):
    _, _, loss = build_loss({"loss": name})
    with pytest.raises(ConfigError, match="4 channels and teacher tap 5"):
        loss.build_adapter((2, 4, 8, 8), (2, 5, 16, 16))
