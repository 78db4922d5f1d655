"""`segkd demo --quick`: every artefact, a finite table, a self-contained report, resume, --force, the guard."""

import base64
import io
import json
import math
import os
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from segkd.cli import app
from segkd.demo import runner as demo_runner
from segkd.demo.plan import DemoPaths, commands, keeping_commands, make_plan
from segkd.demo.side_by_side import run_side_by_side
from segkd.demo.state import DemoState
from segkd.errors import ConfigError
from segkd.report.table import COLUMNS

cli = CliRunner()
STEP_NAMES = ["data", "teacher", "student", "distill", "eval", "export", "bench", "predict", "report"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[Path, dict]:
    """One `segkd demo --quick --json` run shared by the tests that read its outputs."""
    out = tmp_path_factory.mktemp("demo") / "out"
    result = cli.invoke(app, ["demo", "--quick", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_quick_demo_writes_every_artefact(quick):
    out, doc = quick
    assert sorted(doc["steps"]) == sorted(STEP_NAMES)  # in the order they finished: teacher/student either way
    paths = DemoPaths(out)
    for model in ("teacher", "student", "student-kd"):
        assert paths.best(model).is_file()
        assert (paths.runs / "eval" / model / "metrics.json").is_file()
        assert len(list((out / "overlays" / model / "labels").glob("*.png"))) == 2
        assert (paths.best(model).parents[1] / "results.csv").is_file()
    assert paths.onnx.is_file() and paths.onnx.with_suffix(".int8.onnx").is_file()
    assert (paths.runs / "bench" / "demo" / "results.csv").is_file()
    for name in ("report.html", "report.md", "report/overlays.png", "report/curves.png", "report/confusion.png",
                 "report/fps_vs_miou.png", "demo-state.json", "fastsegformer-p-demo.yaml", "segformer-b1-demo.yaml"):
        assert (out / name).is_file(), name
    assert doc["steps"]["distill"]["teacher_size"] == [96, 96] and doc["steps"]["distill"]["student_size"] == [64, 64]


def test_quick_demo_table_has_finite_metrics(quick):
    _, doc = quick
    rows = doc["table"]
    assert [r["name"] for r in rows] == ["teacher", "student", "student-kd"]
    for row in rows:
        for key, _, _ in COLUMNS:
            if key in ("model", "input") or (key.startswith("int8") and row["name"] != "student-kd"):
                continue
            assert isinstance(row[key], float) and math.isfinite(row[key]), (row["name"], key)
        assert 0 <= row["miou"] <= 100 and row["eager_fps"] > 0
    assert doc["kd_gain"] == pytest.approx(rows[2]["miou"] - rows[1]["miou"])


def test_report_html_embeds_its_images_and_md_links_files_that_exist(quick):
    out, _ = quick
    html = (out / "report.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    for s in sources:
        assert base64.b64decode(s.split(",", 1)[1]).startswith(b"\x89PNG")
    assert "test mIoU %" in html and "distilled · FastSegFormer-P + KD" in html
    md = (out / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", md)
    assert len(links) == 4 and all((out / link).is_file() for link in links)


def test_rerun_skips_finished_steps_and_redoes_a_removed_one(quick, monkeypatch):
    out, doc = quick
    ran = []
    monkeypatch.setattr(demo_runner, "STEPS", [(name, lambda ctx, fn=fn, name=name: ran.append(name) or fn(ctx))
                                               for name, fn in demo_runner.STEPS])
    before = (out / "report.html").stat().st_mtime_ns
    state = demo_runner.run_demo(out, quick=True)
    assert ran == [] and state.steps["report"]["table"] == doc["table"]
    saved = json.loads((out / "demo-state.json").read_text())
    del saved["steps"]["report"]
    (out / "demo-state.json").write_text(json.dumps(saved))
    state = demo_runner.run_demo(out, quick=True)
    assert ran == ["report"] and (out / "report.html").stat().st_mtime_ns > before
    assert sorted(state.steps) == sorted(STEP_NAMES) and list(state.steps)[-1] == "report"


def _fake_steps(monkeypatch, ran: list) -> None:
    """Steps that only record that they ran (resume and --force logic without training)."""
    steps = [(name, lambda ctx, name=name: ran.append(name) or {"n": len(ran)}) for name in STEP_NAMES]
    monkeypatch.setattr(demo_runner, "STEPS", steps)
    monkeypatch.setattr(demo_runner, "SIDE_BY_SIDE", ())  # a spawned process would run the real steps


def test_interrupted_demo_continues_and_force_starts_over(tmp_path, monkeypatch):
    ran = []
    _fake_steps(monkeypatch, ran)
    boom = {"on": True}

    def failing(ctx):
        if boom["on"]:
            raise KeyboardInterrupt
        ran.append("export")
        return {}

    demo_runner.STEPS[5] = ("export", failing)
    with pytest.raises(KeyboardInterrupt):
        demo_runner.run_demo(tmp_path, quick=True)
    assert ran == STEP_NAMES[:5]
    boom["on"] = False
    demo_runner.run_demo(tmp_path, quick=True)
    assert ran == STEP_NAMES[:5] + STEP_NAMES[5:]
    ran.clear()
    demo_runner.run_demo(tmp_path, quick=True, force=True)
    assert ran == STEP_NAMES


def test_side_by_side_steps_each_run_in_their_own_process(quick):
    out, doc = quick
    log = (out / "runs" / "train" / "teacher" / "results.csv").read_text().splitlines()
    assert len(log) == 2  # one epoch
    teacher, student = doc["steps"]["teacher"], doc["steps"]["student"]
    assert teacher["pid"] != student["pid"] and os.getpid() not in (teacher["pid"], student["pid"])


def test_a_failing_side_by_side_step_raises_its_own_error_here(tmp_path):
    plan, paths = make_plan(quick=True), DemoPaths(tmp_path)  # no presets written: both steps fail to start
    with pytest.raises(ConfigError, match=r"-demo\.yaml"):
        run_side_by_side(["teacher", "student"], plan, paths, {}, lambda *event: None)


def test_another_plan_in_the_same_folder_needs_force(tmp_path, monkeypatch):
    _fake_steps(monkeypatch, [])
    demo_runner.run_demo(tmp_path, quick=True)
    result = cli.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "made by another demo plan (images=10, image_size=64" in result.stderr
    assert "pass --force to start over" in result.stderr


@pytest.mark.parametrize("foreign", ["demo-state.json", "fastsegformer-p-demo.yaml", "oranges/mine.txt"])
def test_the_guard_refuses_a_foreign_file_in_out(tmp_path, foreign):
    path = tmp_path / foreign
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("keep")
    result = cli.invoke(app, ["demo", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and sum("error" in line for line in lines) == 1
    assert len(lines) == (2 if foreign.startswith("oranges") else 1)  # the data step's line, then its refusal
    assert "not written by segkd" in result.stderr or "not made by segkd demo" in result.stderr
    assert path.read_text() == "keep"


def test_a_corrupt_state_file_is_one_line(tmp_path):
    DemoState(tmp_path / "demo-state.json", {}).save()  # the demo's own file: recorded in the folder's manifest
    (tmp_path / "demo-state.json").write_text("{")
    result = cli.invoke(app, ["demo", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'demo-state.json'}: unreadable demo state; pass --force " \
                                    "to start over"


def test_bad_images_is_a_usage_error(tmp_path):
    result = cli.invoke(app, ["demo", "--images", "2", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--images 2: at least 5" in result.stderr


def test_readme_story_is_what_the_demo_prints():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("The same steps on the command line:\n\n```bash\n", 1)[1].split("```", 1)[0]
    assert block.splitlines() == list(commands(make_plan(), DemoPaths(Path("runs/demo"))).values())


def test_readme_keeping_commands_are_what_the_demo_prints(quick):
    out, doc = quick
    assert doc["keeping"] == keeping_commands(DemoPaths(out))
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("### A student worth keeping", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert block.splitlines() == keeping_commands(DemoPaths(Path("runs/demo")))


def test_live_display_shows_step_and_epochs(tmp_path, monkeypatch):
    def training(ctx):
        for epoch in (1, 2, 3):
            ctx.on_epoch(epoch, 3)
        return {}

    _fake_steps(monkeypatch, [])
    demo_runner.STEPS[1] = ("teacher", training)
    buffer = io.StringIO()
    demo_runner.run_demo(tmp_path, quick=True, console=Console(file=buffer, force_terminal=True, width=160),
                         live=True)
    text = buffer.getvalue()
    assert "[2/9] teacher" in text and "3/3" in text and "epoch" in text and "ETA" in text
