"""Tap pairs: checked on meta-device probes before any model is built, and `pairs: auto` by output stride."""

from __future__ import annotations

from collections import OrderedDict

import pytest

import segkd.engine.distill as distill_module
from segkd.engine.distill import Distiller
from segkd.engine.tap_pairs import auto_pairs, probe_taps
from segkd.errors import ConfigError

from . import test_distill

kd_setup, voc_root = test_distill.kd_setup, test_distill.voc_root  # the KD fixtures, shared


def test_auto_pairs_equal_stride_deepest_wins_and_lists_the_rest():
    # student at 64 px, teacher at 128 px: strides are per model
    student = OrderedDict(stage1=(1, 8, 16, 16), stage2=(1, 16, 8, 8), fusion=(1, 32, 16, 16),
                          detail=(1, 4, 64, 64), logits=(1, 3, 16, 16))
    teacher = OrderedDict(stage1=(1, 12, 32, 32), stage2=(1, 24, 16, 16), a3=(1, 64, 16, 16),
                          logits=(1, 3, 32, 32))
    pairs, skipped = auto_pairs(student, (64, 64), teacher, (128, 128))
    assert pairs == [("stage1", "stage1"), ("stage2", "a3"), ("fusion", "stage1")]  # stride 4, 8 (a3 deeper), 4
    assert skipped == ["detail"]  # stride 1: the teacher has no tap there (logits never pair)


def test_probe_reads_taps_without_weights():
    shapes, default_cfg = probe_taps({"arch": "segformer_b0", "num_classes": 3, "options": {}}, (64, 64))
    assert shapes["stage4"] == (1, 256, 2, 2) and shapes["logits"] == (1, 3, 16, 16)
    assert default_cfg["input_size"] == (3, 512, 512)


def test_auto_pairs_in_a_term(kd_setup):
    cfg, _ = kd_setup
    cfg.distill.terms = [{"loss": "nfd", "weight": 1.0, "pairs": "auto"}]
    d = Distiller.from_config(cfg)
    # student stage1 @1/4 (32 px); teacher (64 px): stage1 @1/2, stage2 @1/4
    assert d.terms[0].pairs == [("stage1", "stage2")] and d.terms[0].skipped == []
    assert d.describe() == ["nfd ×1: stage1->stage2 (pairs: auto, by stride) (adapter: Conv2d)"]


def test_unknown_tap_fails_before_any_model_is_built(kd_setup, monkeypatch):
    cfg, _ = kd_setup
    monkeypatch.setattr(distill_module, "build_teacher", lambda *a: pytest.fail("the teacher was built"))
    cfg.distill.terms = [{"loss": "nfd", "pairs": [["stage1", "stage1"], ["stage1", "bottle"]]}]
    with pytest.raises(ConfigError, match=r"^distill.terms\[0\]: teacher tap 'bottle' does not exist in "
                                          r"kd_tiny_teacher \(available: stage1, stage2, logits\)$"):
        Distiller.from_config(cfg)
