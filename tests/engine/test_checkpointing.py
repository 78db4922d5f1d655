"""Atomic checkpoints, RNG state in weights_only-safe types, reading a last.pt back to resume."""

import random

import numpy as np
import pytest
import torch

from segkd.config import config_to_dict, load_config
from segkd.engine.checkpointing import (
    atomic_save,
    read_resume_checkpoint,
    repair_best,
    resume_config,
    rng_state,
    run_dir_of,
    set_rng_state,
)
from segkd.errors import ConfigError, WeightsError
from segkd.models import checkpoint_payload, create_model


def test_atomic_save_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "weights" / "last.pt"
    atomic_save({"a": torch.ones(2)}, path)
    atomic_save({"a": torch.zeros(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(2))
    assert sorted(p.name for p in path.parent.iterdir()) == [".segkd-outputs", "last.pt"]  # manifest, no temp


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)
    with pytest.raises(Exception):
        atomic_save({"epoch": 2, "bad": lambda: None}, path)  # not picklable: fails mid-write
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".segkd-outputs", "last.pt"]


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    atomic_save({"rng": rng_state()}, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    got = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1])
    assert got[2:] == expected[2:]


def _last_pt(path, tiny_preset, **extra):
    cfg = load_config(str(tiny_preset))
    model = create_model("tiny_seg", num_classes=3)
    opt = torch.optim.Adam(model.parameters())
    state = {"epoch": 1, "optimizer": opt.state_dict(), "scheduler": {"t": 4.0}, "scaler": {},
             "rng": rng_state(), "best_fitness": 0.5, **extra}
    atomic_save(checkpoint_payload(model, config_to_dict(cfg), **state), path)
    return path


def test_last_pt_loads_weights_only_and_resumes_its_config(tmp_path, tiny_preset):
    path = _last_pt(tmp_path / "runs" / "train" / "x" / "weights" / "last.pt", tiny_preset)
    ckpt = read_resume_checkpoint(path)
    assert ckpt["epoch"] == 1 and ckpt["arch"] == "tiny_seg"
    cfg = resume_config(path, {"data.workers": 3})
    assert cfg.resume == str(path) and cfg.data.workers == 3 and cfg.model.arch == "tiny_seg"
    assert run_dir_of(path) == (tmp_path / "runs" / "train" / "x").resolve()


def test_resume_refuses_keys_that_change_the_run(tmp_path, tiny_preset):
    path = _last_pt(tmp_path / "last.pt", tiny_preset)
    with pytest.raises(ConfigError, match=r"'train.epochs' cannot change when resuming"):
        resume_config(path, {"train.epochs": 7})
    assert resume_config(path, {"train.lr": 0.1}).train.lr == 0.1  # the NaN message's advice can be followed


def test_best_pt_is_not_resumable(tmp_path, tiny_preset):
    cfg = load_config(str(tiny_preset))
    path = tmp_path / "best.pt"
    atomic_save(checkpoint_payload(create_model("tiny_seg", num_classes=3), config_to_dict(cfg)), path)
    with pytest.raises(WeightsError, match=r"best.pt: no training state .*weights/last.pt"):
        read_resume_checkpoint(path)


def test_repair_best_rebuilds_a_best_pt_that_a_crash_left_out(tmp_path):
    weights = tmp_path / "weights"
    model = {"w": torch.ones(2)}
    last = {"format": "segkd", "model": model, "epoch": 3, "best_epoch": 3, "best_fitness": 0.5, "optimizer": {}}
    atomic_save(last, weights / "last.pt")
    atomic_save({"format": "segkd", "model": {"w": torch.zeros(2)}, "epoch": 2}, weights / "best.pt")  # older
    assert repair_best(weights) == weights / "best.pt"
    best = torch.load(weights / "best.pt", weights_only=True)
    assert best["epoch"] == 3 and torch.equal(best["model"]["w"], model["w"]) and "optimizer" not in best
    assert repair_best(weights) is None  # consistent now
    atomic_save({**last, "epoch_step": 2}, weights / "last.pt")  # a mid-epoch (Ctrl-C) save: nothing to repair
    (weights / "best.pt").unlink()
    assert repair_best(weights) is None
