"""The CLI surface: commands listed, examples in every help, exit codes, --json purity."""

import importlib
import inspect
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from segkd.cli import COMMANDS as SPECS
from segkd.cli import app, command_summary

COMMANDS = ["split", "augment", "train", "distill", "eval", "predict", "export", "bench", "presets", "demo"]
runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f" {name} " in result.output


def test_help_summaries_are_the_docstrings():
    """`segkd --help` reads each summary from the source without importing the module: the same first line."""
    assert list(SPECS) == COMMANDS
    for name, spec in SPECS.items():
        doc = inspect.getdoc(importlib.import_module(f"segkd.commands.{spec.module}").main)
        assert command_summary(name) == doc.splitlines()[0], name


def test_help_and_light_commands_start_without_torch():
    code = ("import sys\n"
            "from typer.testing import CliRunner\n"
            "from segkd.cli import app\n"
            "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
            "assert CliRunner().invoke(app, ['split', '--help']).exit_code == 0\n"
            "print(sorted(m for m in ('torch', 'timm', 'onnx', 'onnxruntime') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [
    ["train", "--epochs", "3"],  # a usage error
    ["distill", "--preset", "fastsegformer-p", "train.epoch=3"],  # a config error
    ["eval"],  # a required option missing
    ["export"],
    ["predict", "photo.jpg"],
    ["bench", "--fp16", "--bf16"],
])
def test_usage_and_config_errors_answer_without_importing_torch(args):
    code = ("import sys\n"
            "from segkd.cli import app\n"
            "try:\n"
            f"    app({args!r}, prog_name='segkd')\n"
            "except SystemExit as e:\n"
            "    print(e.code, sorted(m for m in ('torch', 'timm', 'onnx', 'onnxruntime') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.stdout.strip() == "2 []", proc.stderr


def test_an_option_that_names_a_config_key_says_which_override_to_type():
    result = runner.invoke(app, ["train", "--epochs", "3"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "No such option: --epochs. Config keys are set as key=value after the options: train.epochs=3" in result.output
    result = runner.invoke(app, ["distill", "--batch-size=4"], env={"COLUMNS": "200"})
    assert "after the options: train.batch_size=4" in result.output


def test_help_paragraphs_are_not_hard_wrapped_at_the_source_lines():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "300"})
    assert ("Setting train.epochs scales the preset's warm-up, min-lr tail and backbone freeze to the run (3 warm-up "
            "epochs of 1000 become 0.06 of 20); the plan line shows them.") in result.output


def test_unknown_command_exit_2():
    result = runner.invoke(app, ["trian"])
    assert result.exit_code == 2
    assert "No such command 'trian'" in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_has_an_example(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "--install-completion" not in result.output  # only the top level offers completion


def test_presets_json_is_one_document():
    result = runner.invoke(app, ["presets", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    names = {r["name"] for r in rows}
    assert {"fastsegformer-p", "efficientdet-d0-seg", "efficientdet-d4-seg", "pp-mobileseg-tiny"} <= names


def test_presets_show_resolves_base():
    result = runner.invoke(app, ["presets", "show", "mobilev3-small-lraspp", "--json"])
    assert result.exit_code == 0
    cfg = json.loads(result.stdout)
    assert cfg["model"]["arch"] == "mobilev3_small_lraspp"
    assert cfg["train"]["optimizer"] == "sgd"  # inherited from mobilev3-large-lraspp


def test_unknown_preset_is_one_line_exit_2():
    result = runner.invoke(app, ["presets", "show", "fastsegformer-x"])
    assert result.exit_code == 2
    assert "error: unknown preset 'fastsegformer-x'" in result.output
    assert "Traceback" not in result.output


def test_console_script_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "segkd", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.startswith("segkd ")
