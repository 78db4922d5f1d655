"""`segkd eval` end to end on a tiny VOC tree and a tiny registered model (both from tests/engine/conftest.py)."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from segkd.cli import app
from segkd.config import config_to_dict, load_config
from segkd.data.dataset import open_dataset
from segkd.engine.evaluator import evaluate_model
from segkd.models import checkpoint_payload, create_model, load_checkpoint

from testkit import flat, load_test_module

engine_fixtures = load_test_module("engine_fixtures", "engine/conftest.py")  # registers `tiny_seg`

runner = CliRunner()
REPORT = ["metrics.json", "confusion_matrix.csv", "confusion_matrix_normalized.png", "per_class_iou.png"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A tiny VOC tree with classes.txt and a segkd checkpoint `best.pt`, in the current directory."""
    engine_fixtures.make_voc_tree(tmp_path / "voc", n_train=1, n_val=3, size=40, classes_txt=True)
    cfg = load_config(str(engine_fixtures.write_preset(tmp_path / "tiny.yaml")), {"name": "tiny"})
    torch.manual_seed(0)
    model = create_model("tiny_seg", num_classes=3)
    torch.save(checkpoint_payload(model, config_to_dict(cfg)), tmp_path / "best.pt")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _eval(*args):
    return runner.invoke(app, ["eval", "--weights", "best.pt", "--data", "voc", "--split", "val", *args])


def test_json_report_files_and_agreement_with_evaluate_model(workdir):
    result = _eval("--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    run_dir = workdir / "runs" / "eval" / "tiny"
    assert doc["run_dir"] == str(Path("runs/eval/tiny"))
    assert all((run_dir / name).is_file() and (run_dir / name).stat().st_size > 0 for name in REPORT)
    assert list(doc["per_class"]) == ["back", "red", "green"]  # names from the tree's classes.txt
    assert doc["split"] == "val" and doc["images"] == 3 and doc["absent"] == "nan"
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["mIoU"] == doc["mIoU"]

    cfg = load_config(str(workdir / "tiny.yaml"))
    direct = evaluate_model(load_checkpoint("best.pt"), open_dataset("voc", "val", num_classes=3), cfg.data)
    assert doc["mIoU"] == pytest.approx(direct.mIoU)
    rows = (run_dir / "confusion_matrix.csv").read_text().splitlines()
    assert rows[0] == "gt\\pred,back,red,green"
    assert sum(int(v) for row in rows[1:] for v in row.split(",")[1:]) == 3 * 40 * 40 == doc["num_pixels"]


def test_table_output_tta_absent_and_the_same_run_dir_reused(workdir):
    assert _eval("--json").exit_code == 0
    result = _eval("--tta", "flip,0.5,1.0", "--absent", "zero", "--batch", "2")
    assert result.exit_code == 0, result.output
    for text in ("Class", "IoU", "Precision", "Dice", "back", "green", "mean", "absent=zero", "mIoU"):
        assert text in result.stdout
    doc = json.loads((workdir / "runs/eval/tiny/metrics.json").read_text())  # the same weights: exist_ok
    assert doc["absent"] == "zero" and doc["tta"] == {"scales": [0.5, 1.0], "flip": True}
    assert not (workdir / "runs/eval/tiny2").exists()


def test_run_folder_named_after_the_weights_run_and_data_gone(workdir):
    run = workdir / "runs" / "train" / "oranges3" / "weights"
    run.mkdir(parents=True)
    (run / "last.pt").write_bytes((workdir / "best.pt").read_bytes())
    result = runner.invoke(app, ["eval", "-w", str(run / "last.pt"), "--data", "voc", "--split", "val", "--json"])
    assert json.loads(result.stdout)["run_dir"] == str(Path("runs/eval/oranges3-last"))
    cfg = torch.load("best.pt", weights_only=True)
    cfg["config"]["data"]["root"] = str(workdir / "moved-away")
    torch.save(cfg, "moved.pt")
    result = runner.invoke(app, ["eval", "--weights", "moved.pt"])
    assert result.exit_code == 2
    assert flat(result) == f"error: {workdir / 'moved-away'}: the data moved.pt was trained on is not there: pass --data DIR"


def test_foreign_state_dict_with_a_preset(workdir):
    from_ckpt = json.loads(_eval("--json").stdout)
    torch.save(torch.load("best.pt", weights_only=True)["model"], "plain.pth")  # a bare state dict
    result = runner.invoke(app, ["eval", "--weights", "plain.pth", "--preset", "tiny.yaml", "--data", "voc",
                                 "--split", "val", "--json", "name=foreign"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["mIoU"] == from_ckpt["mIoU"] and doc["run_dir"] == str(Path("runs/eval/foreign"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--weights", "missing.pt"], "missing.pt: weights file not found"),
        (["--weights", "state.pt"], "state.pt: not a segkd checkpoint"),
        (["--weights", "best.pt", "--data", "nowhere"], "nowhere"),
        (["--weights", "best.pt", "--data", "voc", "--split", "val", "--tta", "flip,big"], "--tta: 'big'"),
        (["--weights", "best.pt", "--data", "voc", "--absent", "skip"], "eval.absent='skip'"),
    ],
)
def test_bad_input_is_one_line_exit_2(workdir, args, message):
    torch.save({"w": torch.zeros(1)}, workdir / "state.pt")
    result = runner.invoke(app, ["eval", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) == 1
