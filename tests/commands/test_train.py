"""`segkd train` through the CLI on the tiny VOC tree (fixtures from tests/engine/conftest.py)."""

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segkd.cli import app
from segkd.config import load_config
from segkd.engine.trainer import Trainer

from testkit import load_test_module

fx = load_test_module("engine_fixtures", "engine/conftest.py")  # registers `tiny_seg`

runner = CliRunner()


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return fx.make_voc_tree(tmp_path_factory.mktemp("cli") / "voc")


@pytest.fixture
def preset(tmp_path) -> Path:
    return fx.write_preset(tmp_path / "tiny.yaml")


def results(run_dir: Path) -> list[dict]:
    with open(run_dir / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_train_json_summary_and_eval_reproduces_the_best_miou(tmp_path, voc, preset):
    result = runner.invoke(app, ["train", "--preset", str(preset), "--data", str(voc), "--json",
                                 f"project={tmp_path / 'runs'}", "name=cli"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout holds the one JSON document only
    run_dir = tmp_path / "runs" / "train" / "cli"
    assert summary["save_dir"] == str(run_dir) and summary["epochs"] == 2
    assert Path(summary["best"]).is_file() and Path(summary["last"]).is_file()
    rows = results(run_dir)
    assert len(rows) == 2
    best_row = rows[summary["best_epoch"] - 1]
    assert summary["best_miou"] == pytest.approx(float(best_row["val/mIoU"]), abs=1e-6)

    ev = runner.invoke(app, ["eval", "--weights", summary["best"], "--split", "val", "--json",
                             f"project={tmp_path / 'runs'}"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["mIoU"] == pytest.approx(float(best_row["val/mIoU"]), abs=1e-6)


def test_table_output_without_json(tmp_path, voc, preset):
    result = runner.invoke(app, ["train", "-p", str(preset), "-d", str(voc), "train.epochs=1",
                                 f"project={tmp_path / 'runs'}"])
    assert result.exit_code == 0, result.output
    assert "best mIoU" in result.stdout and "results.csv" in result.stdout
    assert (tmp_path / "runs" / "train" / "tiny" / "weights" / "best.pt").is_file()  # name = preset name


class Stop(Exception):
    pass


def test_resume_through_the_cli_finishes_the_run(tmp_path, voc, preset):
    cfg = load_config(str(preset), [f"data.root={voc}", f"project={tmp_path / 'runs'}", "name=r"])
    trainer = Trainer(cfg)

    def stop(t):
        raise Stop

    trainer.add_callback("on_model_save", stop)
    with pytest.raises(Stop):
        trainer.train()
    last = tmp_path / "runs" / "train" / "r" / "weights" / "last.pt"
    result = runner.invoke(app, ["train", f"resume={last}", "data.workers=0", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["final"]["epoch"] == 2
    assert [r["epoch"] for r in results(last.parent.parent)] == ["1", "2"]


@pytest.mark.parametrize("args, message", [
    ([], "error: --preset NAME is required"),
    (["--preset", "fastsegformer-x"], "error: unknown preset 'fastsegformer-x'"),
    (["resume=nowhere/last.pt"], "error: nowhere/last.pt: weights file not found"),
])
def test_usage_errors_are_one_line_exit_2(args, message):
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_resume_refuses_a_preset_and_result_changing_keys(tmp_path, voc, preset):
    cfg = load_config(str(preset), [f"data.root={voc}", f"project={tmp_path / 'runs'}", "name=x",
                                    "train.epochs=1"])
    Trainer(cfg).train()
    last = tmp_path / "runs" / "train" / "x" / "weights" / "last.pt"
    result = runner.invoke(app, ["train", "--preset", str(preset), f"resume={last}"])
    assert result.exit_code == 2 and "drop --preset" in result.output
    result = runner.invoke(app, ["train", f"resume={last}", "train.batch_size=3"])
    assert result.exit_code == 2 and "'train.batch_size' cannot change when resuming" in result.output
    result = runner.invoke(app, ["train", f"resume={last}"])
    assert result.exit_code == 2 and "already finished its 1 epochs" in result.output
