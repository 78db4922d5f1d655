"""Any teacher from any checkpoint: a segkd checkpoint rebuilds itself whatever the preset says (a note says it
won), a foreign state dict needs distill.teacher.arch or .preset, and every problem is one line."""

from __future__ import annotations

import pytest
import torch

from segkd.engine.distill import Distiller
from segkd.engine.teacher import resolve_teacher
from segkd.errors import ConfigError
from segkd.models import create_model
from segkd.models.segformer import IMAGENET_MEAN, IMAGENET_STD

from . import test_distill

kd_setup, voc_root = test_distill.kd_setup, test_distill.voc_root  # the KD fixtures, shared


def test_segkd_checkpoint_wins_over_the_preset_and_says_so(kd_setup):
    cfg, weights = kd_setup
    cfg.distill.teacher.preset = "swin-t-att-unet"  # another family: the checkpoint's kd_tiny_teacher wins
    d = Distiller.from_config(cfg)
    assert d.teacher_arch == "kd_tiny_teacher"
    assert d.teacher_spec.note == (f"teacher: {weights} is a segkd checkpoint of kd_tiny_teacher: its own model, "
                                   "classes and normalisation win over distill.teacher.preset=swin-t-att-unet")
    assert (d.teacher_spec.mean, d.teacher_spec.std) == ([0.5] * 3, [0.5] * 3)  # the checkpoint's own


def test_foreign_state_dict_needs_an_architecture(kd_setup, tmp_path):
    cfg, _ = kd_setup
    torch.manual_seed(3)
    state = create_model("kd_tiny_teacher", num_classes=3).state_dict()
    foreign = tmp_path / "paper.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, foreign)  # a typical release
    cfg.distill.teacher.weights, cfg.distill.teacher.preset = str(foreign), None
    with pytest.raises(ConfigError, match=rf"^distill.teacher.weights={foreign} is not a segkd checkpoint: set "
                                          r"distill.teacher.arch=MODEL .* or distill.teacher.preset=NAME"):
        Distiller.from_config(cfg)
    cfg.distill.teacher.arch = "kd_tiny_teacher"
    d = Distiller.from_config(cfg)
    assert d.teacher_arch == "kd_tiny_teacher" and d.teacher_spec.note is None
    assert all(torch.equal(d.teacher.state_dict()[k], v) for k, v in state.items())
    cfg.distill.teacher.preset = "segformer-b0"
    with pytest.raises(ConfigError, match=r"give preset=segformer-b0 or arch=kd_tiny_teacher, not both"):
        Distiller.from_config(cfg)


def test_arch_teacher_sees_its_family_normalisation(kd_setup):
    cfg, _ = kd_setup
    cfg.distill.teacher.weights, cfg.distill.teacher.preset = None, None
    cfg.distill.teacher.arch = "segformer_b0"
    cfg.distill.terms = [{"loss": "pkl", "weight": 1.0, "student": "logits", "teacher": "logits"}]
    d = Distiller.from_config(cfg, allow_random_teacher=True)
    assert d.teacher_arch == "segformer_b0"
    assert (d.teacher_spec.mean, d.teacher_spec.std) == (list(IMAGENET_MEAN), list(IMAGENET_STD))


def test_nothing_named_is_one_line(kd_setup):
    cfg, _ = kd_setup
    cfg.distill.teacher.weights, cfg.distill.teacher.preset = None, None
    with pytest.raises(ConfigError, match=r"^distill.teacher: set 'weights' \(a segkd checkpoint\), or 'preset' / "
                                          r"'arch' \(the teacher's model\)$"):
        resolve_teacher(cfg)
