"""A preset's phases scale with an overridden train.epochs (segkd.config.recipe)."""

import pytest

from segkd.config import load_config


def test_phases_scale_with_overridden_epochs():
    notes: list[str] = []
    cfg = load_config("fastsegformer-p", ["train.epochs=20"], notes)  # the recipe: 3 / 15 / 50 of 1000 epochs
    assert cfg.train.warmup_epochs == pytest.approx(0.06)
    assert cfg.train.min_lr_epochs == pytest.approx(0.3)
    assert cfg.train.freeze_epochs == 1
    assert cfg.distill.freeze_epochs == 0  # a zero phase stays zero
    assert notes == ["train.epochs=20: the preset's 1000-epoch recipe scales to the run (train.warmup_epochs "
                     "3 -> 0.06, train.min_lr_epochs 15 -> 0.3, train.freeze_epochs 50 -> 1)"]


def test_unchanged_epochs_keep_the_recipe():
    notes: list[str] = []
    for cfg in (load_config("fastsegformer-p", None, notes), load_config("fastsegformer-p", ["train.lr=1e-3"], notes),
                load_config("fastsegformer-p", ["train.epochs=1000"], notes)):
        assert (cfg.train.warmup_epochs, cfg.train.min_lr_epochs, cfg.train.freeze_epochs) == (3, 15, 50)
    assert notes == []


def test_a_phase_set_with_the_epochs_is_taken_as_written():
    cfg = load_config("fastsegformer-p", ["train.epochs=20", "train.warmup_epochs=2", "train.freeze_epochs=0"])
    assert cfg.train.warmup_epochs == 2 and cfg.train.freeze_epochs == 0
    assert cfg.train.min_lr_epochs == pytest.approx(0.3)


def test_iteration_phases_scale_and_round():
    cfg = load_config("pp-mobileseg-base", ["train.epochs=16"])  # 1500 warm-up iterations in 160 epochs
    assert cfg.train.warmup_iters == 150


def test_a_preset_that_sets_other_epochs_scales_its_base(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: fastsegformer-p\ntrain:\n  epochs: 100\n  min_lr_epochs: 5\n")
    cfg = load_config(str(path))
    assert cfg.train.warmup_epochs == pytest.approx(0.3) and cfg.train.freeze_epochs == 5
    assert cfg.train.min_lr_epochs == 5  # set in the same file as the epochs
    again = load_config(str(path), ["train.epochs=50"])  # scales from the file's own 100 epochs
    assert again.train.warmup_epochs == pytest.approx(0.15) and again.train.min_lr_epochs == pytest.approx(2.5)
