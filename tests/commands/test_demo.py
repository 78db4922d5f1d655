"""`segkd demo`: generates the orange data with splits, reruns over its own output, refuses foreign folders."""

import json
from pathlib import Path

from typer.testing import CliRunner

from segkd.cli import app
from segkd.commands.demo import run_demo

runner = CliRunner()


def test_demo_writes_data_and_prints_next_steps(tmp_path: Path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--images", "6", "--size", "48"])
    assert result.exit_code == 0, result.output
    root = tmp_path / "oranges"
    assert len(list((root / "JPEGImages").glob("*.jpg"))) == 6
    assert (root / "ImageSets" / "Segmentation" / "train.txt").read_text().count("\n") == 4
    assert "4 train / 1 val / 1 test" in result.stdout
    assert f"segkd train --preset fastsegformer-p data.root={root}" in result.stderr


def test_demo_json_and_rerun(tmp_path: Path):
    run_demo(tmp_path, images=4, size=40)
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--images", "5", "--size", "40", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["steps"]["data"]["splits"] == {"train": 3, "val": 1, "test": 1}
    assert doc["next"][0].startswith("segkd train --preset fastsegformer-p")


def test_demo_refuses_a_foreign_folder(tmp_path: Path):
    (tmp_path / "oranges").mkdir()
    (tmp_path / "oranges" / "mine.txt").write_text("keep")
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--images", "2", "--size", "32"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'oranges'}: folder is not empty and was not made by segkd demo; "
        "choose another output folder"]
    assert [p.name for p in (tmp_path / "oranges").iterdir()] == ["mine.txt"]
