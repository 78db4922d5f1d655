"""Distillation with the relation and boundary terms (DIST, CIRKD, BPKD), whose losses may need the batch's labels.

Reuses the tiny KD families and data of tests/engine/test_distill.py (loaded by path).
"""

from __future__ import annotations

import csv
import math

import pytest
import torch

from segkd.config import load_config, preset_names
from segkd.engine.distill import Distiller, parse_terms
from segkd.losses import build_loss
from testkit import load_test_module

kd = load_test_module("kd_engine_fixtures", "engine/test_distill.py")  # the tiny KD families

TERMS = {
    "dist": {"loss": "dist", "weight": 1.0, "student": "logits", "teacher": "logits"},
    "cirkd": {"loss": "cirkd", "weight": 1.0, "student": "stage1", "teacher": "stage2", "pixels": 16},
    "cirkd_memory": {"loss": "cirkd", "weight": 1.0, "student": "stage1", "teacher": "stage2", "pixels": 16,
                     "memory": True, "pixel_memory": 64, "region_memory": 8, "pixel_contrast": 16,
                     "region_contrast": 4},
    "cirkd_teacher_regions": {"loss": "cirkd", "weight": 1.0, "student": "stage1", "teacher": "stage2",
                              "regions": "teacher"},
    "bpkd": {"loss": "bpkd", "weight": 1.0, "student": "logits", "teacher": "logits", "width": 1},
}


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return kd.make_voc(tmp_path_factory.mktemp("kdvoc_labels"))


def distill_cfg(tmp_path, voc_root, term: dict):
    t_preset = kd.teacher_preset(tmp_path)
    weights = kd.teacher_checkpoint(tmp_path, t_preset)
    preset = kd.distill_preset(tmp_path, {"preset": str(t_preset), "weights": str(weights), "input_size": 64},
                               terms=[term])
    return load_config(str(preset), [f"data.root={voc_root}", f"project={tmp_path / 'runs'}"])


@pytest.mark.parametrize("case", list(TERMS))
def test_one_epoch_with_each_term(tmp_path, voc_root, case):
    cfg = distill_cfg(tmp_path, voc_root, TERMS[case])
    d, _, summary = kd.run_distill(cfg)
    name = TERMS[case]["loss"]
    with open(summary["results"]) as f:
        rows = list(csv.DictReader(f))
    value = float(rows[-1][f"train/{name}"])
    assert math.isfinite(value) and value > 0
    if name != "dist":
        assert d.terms[0].loss.ignore_index == 255  # the data's ignore index reached the term
    if case == "cirkd_memory":
        assert int(d.terms[0].loss.bank.region_count.sum()) > 0  # the queues filled during the epoch


def test_labels_reach_only_terms_that_ask(tmp_path, voc_root):
    cfg = distill_cfg(tmp_path, voc_root, TERMS["bpkd"])
    cfg.distill.terms.append(TERMS["dist"])
    d = Distiller.from_config(cfg)
    student = kd.create_model("kd_tiny_student", num_classes=3)
    images, masks = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    _, adapted = d.student_module(student)(d.student_input(images))
    terms = d(images, adapted, masks)
    assert set(terms) == {"bpkd", "dist"} and all(torch.isfinite(v) for v in terms.values())
    with pytest.raises(ValueError, match="'bpkd' needs the batch's labels"):
        d(images, adapted)


@pytest.mark.parametrize("name", [n for n in preset_names() if load_config(n).distill is not None])
def test_every_shipped_kd_term_builds(name):
    cfg = load_config(name)
    for i, (spec, _) in enumerate(parse_terms(cfg.distill.terms)):
        build_loss(spec, where=f"{name}: distill.terms[{i}]",
                   defaults={"ignore_index": cfg.data.ignore_index, "num_classes": cfg.model.num_classes})
