"""`segkd bench` end to end on a tiny model: protocol header, table columns, CSV/JSON files, plots, errors."""

import csv
import json
import os

from typer.testing import CliRunner

from segkd.cli import app
from segkd.deploy.bench_report import COLUMNS

from testkit import flat, load_test_module

fx = load_test_module("deploy_fixtures", "deploy/conftest.py")  # registers `deploy_tiny`

runner = CliRunner()
QUICK = ["--warmup", "1", "--iters", "3", "--min-time", "0", "--device", "cpu", "--threads", "1"]


def test_table_files_and_plots(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = fx.save_checkpoint(tmp_path / "tiny.pt")
    data = fx.write_dataset(tmp_path / "data")
    result = runner.invoke(app, ["bench", "-w", str(ckpt), "--data", str(data), "--plot", *QUICK])
    assert result.exit_code == 0, result.output
    text = flat(result)
    assert "device cpu" in text and "1 threads" in text and "warm-up 1" in text and "model only" in text
    assert "one fused multiply-add = one FLOP" in text
    run = tmp_path / "runs" / "bench" / "tiny"
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [(r["backend"], r["status"]) for r in rows] == [("torch", "✅"), ("onnxruntime", "✅")]
    assert all(float(r["mean_ms"]) > 0 and r["miou"] != "" and r["iters"] == "3" for r in rows)
    doc = json.loads((run / "bench.json").read_text())
    assert doc["batch"] == 1 and len(doc["rows"]) == 2
    assert (run / "fps_vs_miou.png").is_file() and (run / "params_vs_miou.png").is_file()
    log = (tmp_path / "runs" / "bench" / "benchmarks.log").read_text()
    assert all(header in log for _, header, _ in COLUMNS)


def test_json_onnx_weights_and_e2e(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = fx.save_checkpoint(tmp_path / "tiny.pt")
    assert runner.invoke(app, ["export", "-w", str(ckpt), "--fp16"]).exit_code == 0
    result = runner.invoke(app, ["bench", "-w", f"{ckpt},{tmp_path / 'tiny.fp16.onnx'}", "--backend", "onnxruntime",
                                 "--e2e", "--batch", "2", "--json", *QUICK])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [(r["model"], r["backend"], r["dtype"], r["status"]) for r in doc["rows"]] == [
        ("tiny", "onnxruntime", "fp32", "✅"), ("tiny.fp16", "onnxruntime", "fp16", "✅")]
    assert doc["e2e"] and "end-to-end" in doc["protocol"][2] and doc["rows"][0]["fps"] > 0
    assert any(f.endswith("results.csv") for f in doc["files"])


def test_presets_and_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["bench", "--preset", "fastsegformer-p", "--backend", "torch", "--imgsz", "32",
                                 *QUICK, "model.arch=deploy_tiny", "model.options={}"])
    assert result.exit_code == 0, result.output
    assert "fastsegformer-p" in result.stdout and "32×32" in result.stdout


def test_no_target_benchmarks_the_latest_run_or_the_fastsegformer_pair(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["bench", "--backend", "torch", "--fp16", "--imgsz", "64", "--json", *QUICK])
    assert result.exit_code == 0, result.output
    assert "benchmarking fastsegformer-p and fastsegformer-e (no best.pt under runs/)" in flat(result)
    doc = json.loads(result.stdout)
    assert [r["model"] for r in doc["rows"]] == ["fastsegformer-p", "fastsegformer-e"]
    assert "precision bf16 autocast (--fp16 on a CPU)" in doc["protocol"][1]
    old, new = (tmp_path / "runs" / "train" / n / "weights" / "best.pt" for n in ("old", "new"))
    for path in (old, new):
        path.parent.mkdir(parents=True)
        fx.save_checkpoint(path)
    os.utime(old, (1e9, 1e9))  # written long before `new`
    result = runner.invoke(app, ["bench", "--backend", "torch", *QUICK])
    assert result.exit_code == 0, result.output
    assert f"benchmarking {new.relative_to(tmp_path)} (the most recent run's best.pt)" in flat(result)
    result = runner.invoke(app, ["bench", "--preset", "fastsegformer-p", "--backend", "tensorrt"])
    assert result.exit_code == 2 and "--backend tensorrt" in flat(result)
    result = runner.invoke(app, ["bench", "--preset", "fastsegformer-p", "--fp16", "--bf16"])
    assert result.exit_code == 2 and "exclude each other" in flat(result)
