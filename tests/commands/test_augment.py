"""`segkd augment` through the CLI: tables and JSON, every refusal as one `error:` line with exit 2, nothing
written and DATA unchanged; corrupt pairs named with exit 3."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from segkd.cli import app

from testkit import load_test_module

runner = CliRunner()
trees = load_test_module("data_trees", "data/conftest.py")  # tiny trees, tree_digest
LISTS = Path("ImageSets") / "Segmentation"


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    root = trees.make_voc(tmp_path / "voc", n=6)
    trees.write_list(root / LISTS / "train.txt", ["img_000", "img_001", "img_002", "img_003"])
    trees.write_list(root / LISTS / "val.txt", ["img_004"])
    trees.write_list(root / LISTS / "test.txt", ["img_005"])
    return root


def _refused(result, pattern: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert pattern in lines[0], lines[0]


def test_tables_then_json(voc: Path, tmp_path: Path):
    result = runner.invoke(app, ["augment", str(voc), "--out", str(tmp_path / "a"), "--times", "3", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "images before" in result.stdout and "class pixel shares in train" in result.stdout
    assert "wrote" in result.stderr
    result = runner.invoke(app, ["augment", str(voc), "--out", str(tmp_path / "b"), "--times", "3", "--json",
                                 "--preview", "--recipe", "efficientdet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["images"] == {"train": {"before": 4, "after": 16}, "val": {"before": 1, "after": 1},
                             "test": {"before": 1, "after": 1}}
    assert doc["recipe"] == "efficientdet" and doc["skipped"] == [] and Path(doc["preview"]).is_file()
    assert len(doc["pixel_shares"]["before"]) == len(doc["classes"]) == 4


def _no_lists(tmp_path: Path) -> Path:
    return trees.make_plain(tmp_path / "plain", n=3)


def _recipe(tmp_path: Path, ops: list) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(ops))
    return str(path)


@pytest.mark.parametrize("case", ["inside", "equal", "non_empty", "force_foreign", "earlier_no_force",
                                  "unknown_op", "unknown_param", "times_0", "no_lists"])
def test_refusals_leave_everything_as_it_was(voc: Path, tmp_path: Path, case: str):
    out, extra, data = tmp_path / "out", [], voc
    pattern = {
        "inside": "lies inside it", "equal": "--out is DATA", "non_empty": "not written by segkd augment",
        "force_foreign": "not written by segkd augment", "earlier_no_force": "pass --force to replace it",
        "unknown_op": "augment[1]: unknown op 'rotat', did you mean 'rotate'?",
        "unknown_param": "augment[0]: op 'hflip' has no parameter 'prob'", "times_0": "--times 0",
        "no_lists": "has no split lists: run `segkd split",
    }[case]
    if case == "inside":
        out = voc / "aug"
    elif case == "equal":
        out = voc
    elif case in ("non_empty", "force_foreign"):
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        extra = ["--force"] if case == "force_foreign" else []
    elif case == "earlier_no_force":
        assert runner.invoke(app, ["augment", str(voc), "--out", str(out), "--workers", "1"]).exit_code == 0
    elif case == "unknown_op":
        extra = ["--recipe", _recipe(tmp_path, [{"op": "hflip"}, {"op": "rotat"}])]
    elif case == "unknown_param":
        extra = ["--recipe", _recipe(tmp_path, [{"op": "hflip", "prob": 1}])]
    elif case == "times_0":
        extra = ["--times", "0"]
    else:
        data = _no_lists(tmp_path)
    data_before, out_before = trees.tree_digest(data), trees.tree_digest(out) if out.exists() else None
    siblings = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(app, ["augment", str(data), "--out", str(out), *extra])
    _refused(result, pattern)
    assert trees.tree_digest(data) == data_before
    assert (trees.tree_digest(out) if out.exists() else None) == out_before
    assert sorted(p.name for p in tmp_path.iterdir()) == siblings  # no temp folder, no new --out


def test_corrupt_mask_is_named_and_exits_3(voc: Path, tmp_path: Path):
    (voc / "SegmentationClass" / "img_002.png").write_bytes(b"\x89PNG broken")
    result = runner.invoke(app, ["augment", str(voc), "--out", str(tmp_path / "out"), "--times", "2"])
    assert result.exit_code == 3, result.output
    assert "skipped:" in result.stderr and "img_002.png: unreadable mask" in result.stderr
    assert "1 pair(s) skipped" in result.stderr
    assert (tmp_path / "out" / LISTS / "train.txt").read_text().split().count("img_003_aug2") == 1
