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
    preset = tmp_path / "fastsegformer-p-demo.yaml"
    assert preset.read_text().startswith("# written by segkd demo") and "base: fastsegformer-p" in preset.read_text()
    assert commands[0] == f"segkd train --preset {preset} --data {root} name=teacher train.epochs=40"
    assert commands[1] == f"segkd train --preset {preset} --data {root} name=student"
    assert commands[2].endswith("name=student-kd teacher.weights=runs/train/teacher/weights/best.pt")
    assert commands[3] == "segkd eval --weights runs/distill/student-kd/weights/best.pt --split test"
    assert commands[5] == "segkd bench --fp16"  # the most recent run's best.pt: the distilled student


def test_demo_json_and_rerun(tmp_path: Path):
    run_demo(tmp_path, images=4, size=40)
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--images", "5", "--size", "40", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["steps"]["data"]["splits"] == {"train": 3, "val": 1, "test": 1}
    assert doc["steps"]["recipe"]["preset"] == str(tmp_path / "fastsegformer-p-demo.yaml")
    assert doc["next"][0].startswith(f"segkd train --preset {tmp_path / 'fastsegformer-p-demo.yaml'} ")


def test_demo_refuses_a_foreign_folder(tmp_path: Path):
    (tmp_path / "oranges").mkdir()
    (tmp_path / "oranges" / "mine.txt").write_text("keep")
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--images", "2", "--size", "32"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'oranges'}: folder is not empty and was not made by segkd demo; "
        "choose another output folder"]
    assert [p.name for p in (tmp_path / "oranges").iterdir()] == ["mine.txt"]


def test_demo_keeps_a_preset_file_it_did_not_write(tmp_path: Path):
    run_demo(tmp_path, images=2, size=32)
    preset = tmp_path / "fastsegformer-p-demo.yaml"
    preset.write_text(preset.read_text().replace("lr: 2.0e-3", "lr: 1.0e-3"))  # an edit below the first line
    run_demo(tmp_path, images=2, size=32)
    assert "lr: 2.0e-3" in preset.read_text()  # the first line unchanged: the demo writes its recipe again
    preset.write_text("base: fastsegformer-p\n")
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--images", "2", "--size", "32"])
    assert result.exit_code == 2
    assert f"{preset}: exists and was not written by segkd demo" in result.stderr
    assert preset.read_text() == "base: fastsegformer-p\n"


def test_printed_train_and_distill_commands_resolve_to_valid_configs(tmp_path: Path):
    run = run_demo(tmp_path, images=2, size=32)
    for command in next_commands(run):
        words = shlex.split(command)
        if words[1] not in ("train", "distill"):
            continue
        preset = words[words.index("--preset") + 1]
        overrides = expand_aliases(parse_overrides([w for w in words[2:] if "=" in w]))
        cfg = load_config(preset, overrides)
        assert cfg.model.arch == "fastsegformer_p" and cfg.data.input_size == 128 and cfg.train.lr == 2e-3
        assert [s["name"] for s in cfg.loss] == ["ce", "dice"] and cfg.augment == [{"op": "hflip", "p": 0.5}]
        assert cfg.train.scheduler == "poly" and cfg.train.warmup_epochs == 0 and cfg.train.freeze_epochs == 0
        assert cfg.train.epochs == (40 if "name=teacher" in command else 30)
        if words[1] == "distill":
            assert cfg.distill.normalize and [t["loss"] for t in cfg.distill.terms] == ["pkl"]


def test_readme_story_is_what_the_demo_prints():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("Run them in order from the same folder:\n\n```bash\n", 1)[1].split("```", 1)[0]
    assert block.splitlines() == next_commands(DemoRun(Path("demo")))
