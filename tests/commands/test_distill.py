"""`segkd distill` end to end on a tiny VOC tree (the tiny families of tests/engine/test_distill.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from segkd.cli import app
from segkd.commands.distill import expand_aliases
from segkd.errors import ConfigError
from segkd.models import load_checkpoint

from testkit import load_test_module

kd = load_test_module("kd_engine_fixtures", "engine/test_distill.py")  # the tiny KD families

runner = CliRunner()


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    return kd.make_voc(tmp_path_factory.mktemp("kdcli"))


@pytest.fixture
def kd_files(tmp_path):
    t_preset = kd.teacher_preset(tmp_path)
    weights = kd.teacher_checkpoint(tmp_path, t_preset)
    preset = kd.distill_preset(tmp_path, {"preset": str(t_preset), "weights": None, "input_size": 64})
    return preset, weights


def invoke(*args: str):
    return runner.invoke(app, ["distill", *map(str, args)])


def test_one_epoch_distill_json(kd_files, voc_root, tmp_path):
    preset, weights = kd_files
    result = invoke("--preset", preset, "--data", voc_root, "--json", f"teacher.weights={weights}",
                    f"project={tmp_path / 'runs'}", "name=kd")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["command"] == "distill" and doc["kd_terms"] == ["nfd", "pkl"]
    assert doc["teacher"]["arch"] == "kd_tiny_teacher" and doc["teacher"]["weights"] == str(weights)
    assert 0.0 <= doc["teacher"]["val"]["mIoU"] <= 1.0
    assert {"train/nfd", "train/pkl", "train/ce"} <= set(doc["final"])
    assert Path(doc["save_dir"]) == tmp_path / "runs" / "distill" / "kd"
    student = load_checkpoint(doc["best"])  # a distilled best.pt loads like a trained one
    assert student.arch == "kd_tiny_student"
    assert student(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    # the teacher checkpoint was trained at 32: its own size wins over the preset's 64 unless set on the command line
    assert "teacher kd_tiny_teacher at 32×32" in result.stderr and "teacher val mIoU" in result.stderr
    assert doc["teacher"]["input_size"] == [32, 32]


def test_table_output_and_full_key(kd_files, voc_root, tmp_path):
    preset, weights = kd_files
    result = invoke("--preset", preset, "--data", voc_root, f"distill.teacher.weights={weights}",
                    f"project={tmp_path / 'runs'}")
    assert result.exit_code == 0, result.output
    assert "teacher" in result.stdout and "student (best" in result.stdout and "best:" in result.stdout


def test_teacher_input_size_set_on_the_command_line_wins(kd_files, voc_root, tmp_path):
    preset, weights = kd_files
    result = invoke("--preset", preset, "--data", voc_root, "--json", f"teacher.weights={weights}",
                    "teacher.input_size=64", f"project={tmp_path / 'runs'}")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["teacher"]["input_size"] == [64, 64]


def test_missing_teacher_weights_exit_2(kd_files, voc_root, tmp_path):
    preset, _ = kd_files
    result = invoke("--preset", preset, "--data", voc_root, f"project={tmp_path}")
    assert result.exit_code == 2
    assert "distill.teacher.weights is not set" in result.stderr


def test_random_teacher_runs_with_warning(kd_files, voc_root, tmp_path):
    preset, _ = kd_files
    result = invoke("--preset", preset, "--data", voc_root, "--random-teacher", "--json", f"project={tmp_path}")
    assert result.exit_code == 0, result.output
    assert "untrained" in result.stderr
    assert json.loads(result.stdout)["teacher"]["weights"].endswith("(random init)")


def test_preset_without_distill_block(voc_root, tmp_path):
    plain = kd.write_preset(tmp_path / "plain.yaml")
    result = invoke("--preset", plain, "--data", voc_root)
    assert result.exit_code == 2
    assert "has no distill block" in result.stderr


def test_unknown_tap_exit_2(kd_files, voc_root, tmp_path):
    preset, weights = kd_files
    result = invoke("--preset", preset, "--data", voc_root, f"teacher.weights={weights}",
                    "distill.terms=[{loss: fitnet, student: stage1, teacher: stage7}]")
    assert result.exit_code == 2
    assert "teacher tap 'stage7' does not exist in kd_tiny_teacher (available: stage1, stage2, logits)" in result.stderr


def test_no_preset():
    result = invoke("train.epochs=1")
    assert result.exit_code == 2 and "needs --preset" in result.stderr


def test_aliases():
    assert expand_aliases({"teacher.weights": "t.pt", "train.lr": 1}) == {"distill.teacher.weights": "t.pt",
                                                                         "train.lr": 1}
    with pytest.raises(ConfigError, match="set the same key"):
        expand_aliases({"teacher.weights": "a", "distill.teacher.weights": "b"})


def test_a_missing_tap_is_one_line_exit_2_and_the_checkpoint_note(kd_files, voc_root, tmp_path):
    preset, weights = kd_files
    common = ["--preset", preset, "--data", voc_root, f"teacher.weights={weights}", f"project={tmp_path / 'runs'}"]
    result = invoke(*common, "distill.terms=[{loss: nfd, pairs: [[stage1, bottle]]}]")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: distill.terms[0]: teacher tap 'bottle' does not exist in kd_tiny_teacher (available: stage1, "
        "stage2, logits)")
    assert not (tmp_path / "runs").exists()
    result = invoke(*common, "train.time=0.0003", "distill.teacher.preset=segformer-b0",
                    "distill.terms=[{loss: nfd, pairs: auto}]")
    assert result.exit_code == 0, result.output
    assert (f"note: teacher: {weights} is a segkd checkpoint of kd_tiny_teacher: its own model, classes and "
            "normalisation win over distill.teacher.preset=segformer-b0") in result.stderr
    assert "nfd ×1: stage1->stage2 (pairs: auto, by stride)" in result.stderr
    assert "time budget: train.time=0.0003 h = 1 s" in result.stderr
