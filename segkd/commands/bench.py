"""`segkd bench`: latency, FPS, params, GFLOPs, memory (and mIoU) per model × backend, with the protocol stated.

With nothing named it benchmarks the most recent run's best.pt under runs/, or the FastSegFormer pair when there
is none. The engine (torch) is imported once the options are valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from segkd import deploy
from segkd.commands.common import OVERRIDES_HELP, err, out, print_json, progress_enabled
from segkd.commands.export import parse_size
from segkd.engine.runs import latest_weights, make_run_dir
from segkd.errors import ConfigError

#: what `segkd bench` times when nothing is named and runs/ holds no best.pt
DEFAULT_PRESETS = ["fastsegformer-p", "fastsegformer-e"]


def _names(values: list[str] | str | None) -> list[str]:
    """Comma-separated and/or repeated option values -> a flat list."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else values
    return [v.strip() for item in items for v in item.split(",") if v.strip()]


def main(
    preset: Optional[str] = typer.Option(None, "--preset", help="Preset(s), comma-separated (random weights: "
                                         "speed only; with one preset, --weights may be a foreign file)."),
    weights: Optional[list[str]] = typer.Option(None, "--weights", "-w", help="Checkpoint(s) or .onnx file(s); "
                                                "repeat or comma-separate."),
    imgsz: Optional[str] = typer.Option(None, "--imgsz", help="Input size 224 or H,W (default: each model's own)."),
    batch: int = typer.Option(1, "--batch", min=1, help="Images per forward pass."),
    fp16: bool = typer.Option(False, "--fp16", help="Half precision: autocast and pure .half() on CUDA; bf16 "
                              "autocast on the CPU (no fast fp16 CPU kernels)."),
    bf16: bool = typer.Option(False, "--bf16", help="bf16 autocast."),
    backend: str = typer.Option("torch,onnxruntime", "--backend", help="Comma-separated: torch, compile, onnxruntime."),
    e2e: bool = typer.Option(False, "--e2e", help="Time JPEG decode + preprocess + model + postprocess."),
    plot: bool = typer.Option(False, "--plot", help="Write FPS-vs-mIoU and params-vs-mIoU scatter PNGs."),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder: adds val mIoU (trained weights) and "
                                        "real images for --e2e."),
    warmup: int = typer.Option(5, "--warmup", min=0, help="Untimed warm-up calls."),
    iters: int = typer.Option(100, "--iters", min=1, help="Timed calls, at least."),
    min_time: float = typer.Option(2.0, "--min-time", min=0.0, help="Seconds of timed calls, at least."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (PyTorch and ONNX Runtime)."),
    name: Optional[str] = typer.Option(None, "--name", help="Run name under runs/bench/ (default: first model)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of the table."),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP + " (applied to every preset)"),
) -> None:
    """Benchmark models: one row per model × backend, protocol in the header, CSV/JSON under runs/bench/.

    Defaults follow MMSegmentation's benchmark: 5 warm-up calls, then at least 100 timed calls and 2 s, batch 1,
    model only; --e2e adds decode, preprocessing and postprocessing.

    With no --preset or --weights it times the most recent runs/*/*/weights/best.pt (and says which), or the
    FastSegFormer-P/-E pair when there is none.

    Example: [bold]segkd bench --preset fastsegformer-p,segformer-b0 --imgsz 224 --threads 2[/]
    """
    if fp16 and bf16:
        raise ConfigError("--fp16 and --bf16 exclude each other")
    presets, weights = _names(preset), _names(weights)
    if not presets and not weights:
        latest = latest_weights("runs")
        weights = [str(latest)] if latest is not None else []
        presets = [] if latest is not None else DEFAULT_PRESETS
        err.print(f"no --preset or --weights: benchmarking {latest or ' and '.join(presets)}"
                  + (" (the most recent run's best.pt)" if latest else " (no best.pt under runs/)"),
                  markup=False, soft_wrap=True)
    backends = tuple(_names(backend))
    for b in backends:
        if b not in deploy.bench.BACKENDS:  # torch from here: the options are valid
            raise ConfigError(f"--backend {b}: choose from {', '.join(deploy.bench.BACKENDS)}")
    if data is not None and not data.is_dir():
        raise ConfigError(f"--data {data}: not a folder")
    targets = deploy.bench.load_targets(presets, weights, overrides or None)
    run_dir = make_run_dir("runs", "bench", name or targets[0].name)
    report = deploy.bench_report
    opts = deploy.bench.BenchOptions(backends, parse_size(imgsz), batch, "fp16" if fp16 else "bf16" if bf16 else "fp32",
                                     e2e, deploy.predictor.pick_device(device), threads,
                                     deploy.timing.Protocol(warmup, iters, min_time), data, run_dir)
    header = report.protocol_header(opts)
    for line in header:
        err.print(line)
    rows = deploy.bench.bench(targets, opts, log=lambda m: err.print(m), progress=progress_enabled())
    doc = report.bench_document(opts, rows)
    files = [report.write_csv(run_dir / "results.csv", rows), report.write_json(run_dir / "bench.json", doc),
             report.append_log(run_dir.parent / "benchmarks.log", header, rows)]
    if plot:
        files += report.plot_scatter(rows, run_dir)
    if as_json:
        print_json({**doc, "files": [str(f) for f in files]})
        return
    out.print(results_table(rows))
    for r in rows:
        if r.notes:
            out.print(f"  {r.model} · {r.backend} · {r.dtype}: {r.notes}")
    out.print("legend: ✅ ran | ❌ failed (reason in its notes above) · latency per batch, FPS = images/s")
    err.print(f"results: {', '.join(str(f) for f in files)}")


def results_table(rows: list) -> Table:
    """One row per BenchRow, the columns of `segkd.deploy.bench_report.COLUMNS`."""
    table = Table(title="segkd bench")
    columns = deploy.bench_report.COLUMNS
    for field, header, _ in columns:
        table.add_column(header, justify="left" if field in ("model", "backend", "dtype", "status") else "right")
    for r in rows:
        table.add_row(*(deploy.bench_report.cell(r, field, fmt) for field, _, fmt in columns))
    return table
