"""`segkd demo`: generates the orange data with splits, reruns over its own output, refuses foreign folders."""

import json
import shlex
from pathlib import Path

from typer.testing import CliRunner

from segkd.cli import app
from segkd.commands.demo import DemoRun, next_commands, run_demo
from segkd.commands.distill import expand_aliases
from segkd.config import load_config, parse_overrides

runner = CliRunner()


def test_demo_writes_data_and_prints_next_steps(tmp_path: Path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--images", "6", "--size", "48"])
    assert result.exit_code == 0, result.output
    root = tmp_path / "oranges"
    assert len(list((root / "JPEGImages").glob("*.jpg"))) == 6
    assert (root / "ImageSets" / "Segmentation" / "train.txt").read_text().count("\n") == 4
    assert "4 train / 1 val / 1 test" in result.stdout
    commands = [line.strip() for line in result.stderr.splitlines() if line.startswith("  segkd ")]
    assert [c.split()[1] for c in commands] == ["train", "train", "distill", "eval", "export", "bench"]
    assert commands[0].startswith(f"segkd train --preset fastsegformer-p --data {root} name=teacher train.epochs=30")
    assert "teacher.weights=runs/train/teacher/weights/best.pt" in commands[2] and "distill.normalize=true" in commands[2]
    assert commands[3] == "segkd eval --weights runs/distill/student-kd/weights/best.pt --split test"
    assert commands[5] == "segkd bench --fp16"  # the most recent run's best.pt: the distilled student


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


def test_printed_train_and_distill_commands_resolve_to_valid_configs(tmp_path: Path):
    for command in next_commands(DemoRun(tmp_path)):
        words = shlex.split(command)
        if words[1] not in ("train", "distill"):
            continue
        preset = words[words.index("--preset") + 1]
        overrides = expand_aliases(parse_overrides([w for w in words[2:] if "=" in w]))
        cfg = load_config(preset, overrides)
        assert cfg.data.input_size == 128 and cfg.train.lr == 1e-3 and [s["name"] for s in cfg.loss] == ["ce", "dice"]
        assert cfg.train.warmup_epochs < 0.1  # the 1000-epoch recipe's phases scaled to the run


def test_readme_story_is_what_the_demo_prints():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("Run them in order from the same folder:\n\n```bash\n", 1)[1].split("```", 1)[0]
    assert block.splitlines() == next_commands(DemoRun(Path("demo")))
