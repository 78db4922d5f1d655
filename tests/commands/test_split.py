"""`segkd split` through the CLI: table and JSON output, exit 2 with one `error:` line, data left untouched."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segkd.cli import app

from testkit import load_test_module

runner = CliRunner()  # click >= 8.2: result.stdout and result.stderr are separate, result.output mixes them
trees = load_test_module("data_trees", "data/conftest.py")  # tiny trees, tree_digest


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    return trees.make_voc(tmp_path / "voc", n=10)


def _one_error_line(result, pattern: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert pattern in lines[0]


def test_table_and_lists(voc: Path):
    result = runner.invoke(app, ["split", str(voc), "--ratio", "6:2:2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "train" in result.stdout and "60.0%" in result.stdout
    assert "wrote train.txt, val.txt, test.txt, trainval.txt" in result.stderr
    assert (voc / "ImageSets" / "Segmentation" / "trainval.txt").read_text().count("\n") == 8


def test_json_is_one_document(voc: Path):
    result = runner.invoke(app, ["split", str(voc), "--ratio", "7:3", "--stratify", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["counts"] == {"train": 7, "val": 3} and doc["stratify"] is True
    assert doc["classes"] == ["class 0", "class 1", "class 2", "class 3"]
    assert len(doc["pixel_shares"]["train"]) == 4


@pytest.mark.parametrize("ratio, message", [
    ("6", "give 2 or 3 parts"), ("1:1:1:1", "give 2 or 3 parts"), ("0:0:0", "the parts sum to 0"),
    ("-6:2:2", "'-6' is negative"), ("six:2:2", "'six' is not a number"),
])
def test_bad_ratio_exit_2(voc: Path, ratio: str, message: str):
    before = trees.tree_digest(voc)
    _one_error_line(runner.invoke(app, ["split", str(voc), "--ratio", ratio]), f"error: ratio '{ratio}': {message}")
    assert trees.tree_digest(voc) == before


def test_existing_lists_need_force(voc: Path):
    assert runner.invoke(app, ["split", str(voc)]).exit_code == 0
    before = trees.tree_digest(voc)
    result = runner.invoke(app, ["split", str(voc), "--seed", "5"])
    _one_error_line(result, "train.txt: split list exists (and 3 more); use --force")
    assert trees.tree_digest(voc) == before
    forced = runner.invoke(app, ["split", str(voc), "--seed", "5", "--force"])
    assert forced.exit_code == 0 and "old lists kept as *.txt.bak" in forced.stderr
    assert (voc / "ImageSets" / "Segmentation" / "train.txt.bak").is_file()


def test_cityscapes_is_refused(tmp_path: Path):
    root = trees.make_cityscapes(tmp_path / "cs", train_ids=True)
    before = trees.tree_digest(root)
    _one_error_line(runner.invoke(app, ["split", str(root)]), "cityscapes splits are folders")
    assert trees.tree_digest(root) == before


def test_missing_folder(tmp_path: Path):
    _one_error_line(runner.invoke(app, ["split", str(tmp_path / "nope")]), "nope: dataset folder not found")


def test_unpaired_files_are_warned(voc: Path):
    (voc / "SegmentationClass" / "img_009.png").unlink()
    result = runner.invoke(app, ["split", str(voc)])
    assert result.exit_code == 0
    assert "warning: 1 images without masks left out: img_009.jpg" in result.stderr


def test_help_documents_the_rounding_rule():
    result = runner.invoke(app, ["split", "--help"])
    assert result.exit_code == 0
    assert "largest" in result.output and "869/290/289" in result.output
