"""Benchmark rows: targets, precisions per backend, failures kept as ❌ rows, CSV / log / plots."""

import csv

import pytest
import torch

import segkd.deploy.backends as backends
from segkd.deploy.bench import BenchOptions, BenchRow, bench, load_targets, row_dtypes
from segkd.deploy.bench_report import COLUMNS, append_log, plot_scatter, protocol_header, write_csv
from segkd.deploy.export import export_onnx
from segkd.deploy.loading import load_model
from segkd.deploy.timing import Protocol
from segkd.errors import ConfigError

QUICK = Protocol(warmup=1, iters=3, min_time=0.0)


def test_targets_from_presets_weights_and_onnx(tiny_ckpt, tmp_path):
    loaded = load_model(tiny_ckpt)
    onnx_path = export_onnx(loaded.model, loaded.meta, tmp_path / "t.onnx").path
    targets = load_targets([], [str(tiny_ckpt), str(onnx_path)])
    assert [(t.name, t.trained, t.model is None) for t in targets] == [("tiny", True, False), ("t", True, True)]
    (preset,) = load_targets(["fastsegformer-p"], [], ["model.arch=deploy_tiny", "model.options={}"])
    assert preset.name == "fastsegformer-p" and not preset.trained and preset.meta.input_size == [224, 224]
    with pytest.raises(ConfigError, match="nothing to bench"):
        load_targets([], [])
    with pytest.raises(ConfigError, match="ambiguous"):
        load_targets(["a", "b"], [str(tiny_ckpt)])


def test_precisions_per_backend():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert row_dtypes("torch", "fp32", cpu) == ["fp32"]
    assert row_dtypes("torch", "fp16", cpu) == ["bf16-autocast"]
    assert row_dtypes("torch", "fp16", cuda) == ["fp16-autocast", "fp16"]
    assert row_dtypes("compile", "bf16", cuda) == ["bf16-autocast"]
    assert row_dtypes("onnxruntime", "fp16", cpu) == ["fp32"]
    assert row_dtypes("onnxruntime", "fp16", cuda) == ["fp16"]


def test_rows_with_miou_and_e2e(tiny_ckpt, tiny_data, tmp_path):
    opts = BenchOptions(("torch", "onnxruntime"), protocol=QUICK, data=tiny_data, e2e=True, workdir=tmp_path)
    rows = bench(load_targets([], [str(tiny_ckpt)]), opts)
    assert [(r.backend, r.dtype, r.status) for r in rows] == [("torch", "fp32", "✅"), ("onnxruntime", "fp32", "✅")]
    for r in rows:
        assert r.iters == 3 and r.mean_ms > 0 and r.fps == pytest.approx(1000 / r.mean_ms)
        assert r.params_m == pytest.approx(0.001467) and r.gflops > 0 and r.peak_mb > 0
        assert 0 <= r.miou <= 100 and r.input == "32×32"
    assert abs(rows[0].miou - rows[1].miou) < 1.0  # same model, two backends
    assert (tmp_path / "onnx" / "tiny_32x32_b1_fp32.onnx").is_file()


def test_failures_become_rows(tiny_fixed_ckpt, tmp_path, monkeypatch):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler for inductor")

    monkeypatch.setattr(backends.torch, "compile", no_compiler)
    opts = BenchOptions(("torch", "compile"), imgsz=(64, 64), protocol=QUICK, workdir=tmp_path)
    rows = bench(load_targets([], [str(tiny_fixed_ckpt)]), opts)
    assert [r.status for r in rows] == ["❌", "❌"]
    assert "only runs at 32×32" in rows[0].notes
    opts = BenchOptions(("compile",), protocol=QUICK, workdir=tmp_path)
    (row,) = bench(load_targets([], [str(tiny_fixed_ckpt)]), opts)
    assert row.status == "❌" and row.notes == "RuntimeError: no C++ compiler for inductor"


def test_report_files(tmp_path):
    rows = [BenchRow("a", "torch", "fp32", params_m=1.0, mean_ms=10.0, fps=100.0, miou=50.0),
            BenchRow("b", "onnxruntime", "fp32", params_m=2.0, mean_ms=5.0, fps=200.0, miou=55.0),
            BenchRow("c", "compile", "fp32", status="❌", notes="boom")]
    write_csv(tmp_path / "r.csv", rows)
    got = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert got[1]["backend"] == "onnxruntime" and got[2]["notes"] == "boom" and got[2]["mean_ms"] == ""
    header = protocol_header(BenchOptions(precision="fp16", protocol=Protocol(5, 100, 2.0)))
    assert "warm-up 5" in header[1] and "≥100 calls" in header[1] and "fused multiply-add" in header[3]
    assert "bf16 autocast is used instead" in header[-1]
    log = append_log(tmp_path / "benchmarks.log", header, rows).read_text()
    assert all(h in log for _, h, _ in COLUMNS) and "boom" not in log
    assert [p.name for p in plot_scatter(rows, tmp_path)] == ["fps_vs_miou.png", "params_vs_miou.png"]
    assert (tmp_path / "fps_vs_miou.png").stat().st_size > 1000
