"""Optimizer parameter groups: backbone/head multipliers, frozen backbone skipped then trained."""

import pytest
import torch

from segkd.config import TrainConfig
from segkd.engine.optim import ParamGroupSpec, build_optimizer, model_param_groups
from segkd.engine.schedulers import LRSchedule, Scheduler
from segkd.models import create_model


def tiny():
    torch.manual_seed(0)
    return create_model("tiny_seg", num_classes=3)


def test_groups_split_backbone_and_head_with_their_multipliers():
    model = tiny()
    groups = model_param_groups(model, backbone_lr_mult=0.1, head_lr_mult=10.0)
    assert [g.name for g in groups] == ["backbone", "head"]
    assert {id(p) for p in groups[0].params} == {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in groups[1].params} == {id(p) for p in model.head.parameters()}
    opt = build_optimizer(groups, TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=0.01))
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-4, 1e-2])
    assert [g["name"] for g in opt.param_groups] == ["backbone", "head"]
    assert all(g["weight_decay"] == 0.01 for g in opt.param_groups)
    # the scheduler keeps the ratio at every step
    Scheduler(opt, LRSchedule.from_config(TrainConfig(lr=1e-3, scheduler="constant"), 1), per_iter=True).set(3)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-4, 1e-2])


def test_optimizer_kinds():
    groups = model_param_groups(tiny())
    adam = build_optimizer(groups, TrainConfig(optimizer="adam", betas=[0.8, 0.99]))
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["betas"] == (0.8, 0.99)
    sgd = build_optimizer(groups, TrainConfig(optimizer="sgd", momentum=0.9, nesterov=True))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.9 and sgd.defaults["nesterov"] is True


def test_extra_group_for_adapters():
    model, adapter = tiny(), torch.nn.Conv2d(8, 16, 1)
    groups = model_param_groups(model) + [ParamGroupSpec("adapters", list(adapter.parameters()), 5.0)]
    opt = build_optimizer(groups, TrainConfig(lr=1e-3))
    assert [g["name"] for g in opt.param_groups] == ["backbone", "head", "adapters"]
    assert opt.param_groups[2]["lr"] == pytest.approx(5e-3)


def test_frozen_backbone_gets_no_gradient_then_trains_after_unfreezing():
    """The optimizer holds every parameter from the start (FastSegFormer's freeze logic)."""
    model = tiny()
    opt = build_optimizer(model_param_groups(model), TrainConfig(optimizer="adam", lr=1e-2))
    x, y = torch.rand(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16))

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    model.freeze_backbone()
    before = {k: v.clone() for k, v in model.backbone.named_parameters()}
    head_before = model.head[0].weight.clone()
    step()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.backbone.named_parameters())
    assert not torch.equal(head_before, model.head[0].weight)

    model.unfreeze_backbone()
    step()
    assert all(p.grad is not None for p in model.backbone.parameters())
    assert not torch.equal(before["0.weight"], model.backbone[0].weight)
