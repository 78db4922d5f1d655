"""What `segkd bench` writes: the protocol header, results.csv, bench.json, benchmarks.log and scatter plots."""

from __future__ import annotations

import csv
import dataclasses
import json
import platform
from pathlib import Path

import onnxruntime as ort
import torch

from segkd.deploy.bench import BenchOptions, BenchRow
from segkd.outputs import atomic_write

COLUMNS = [  # (field, header, format)
    ("model", "Model", "{}"), ("backend", "Backend", "{}"), ("dtype", "dtype", "{}"), ("status", "Status", "{}"),
    ("input", "Input", "{}"), ("params_m", "Params (M)", "{:.2f}"), ("gflops", "GFLOPs", "{:.2f}"),
    ("mean_ms", "Mean ms", "{:.2f}"), ("median_ms", "Median ms", "{:.2f}"), ("p90_ms", "P90 ms", "{:.2f}"),
    ("fps", "FPS", "{:.1f}"), ("peak_mb", "Peak MB", "{:.0f}"), ("miou", "mIoU", "{:.2f}"),
]


def cell(row: BenchRow, name: str, fmt: str) -> str:
    value = getattr(row, name)
    return "-" if value is None else fmt.format(value)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def effective_precision(opts: BenchOptions) -> str:
    """The precision that really runs: --fp16 on a CPU is bf16 autocast."""
    if opts.precision == "fp16" and opts.device.type != "cuda":
        return "bf16 autocast (--fp16 on a CPU)"
    return {"bf16": "bf16 autocast", "fp16": "fp16"}.get(opts.precision, opts.precision)


def protocol_header(opts: BenchOptions) -> list[str]:
    """The lines that say how every figure in the table was measured."""
    cuda = opts.device.type == "cuda"
    threads = opts.threads or torch.get_num_threads()
    p = opts.protocol
    lines = [
        f"device {opts.device} ({device_name(opts.device)}), {threads} threads · torch {torch.__version__} · "
        f"onnxruntime {ort.__version__}",
        f"batch {opts.batch} · input {'×'.join(map(str, opts.imgsz)) if opts.imgsz else 'each model’s own'} · "
        f"precision {effective_precision(opts)} · warm-up {p.warmup}, then timed calls until ≥{p.iters} calls and ≥{p.min_time:g} s",
        ("timing: CUDA events per call, synchronised" if cuda else "timing: perf_counter per call")
        + " · " + ("end-to-end: JPEG decode + preprocess + model + softmax/restore/argmax"
                   if opts.e2e else "model only: input already on the device, no pre/post-processing"),
        "GFLOPs: fvcore, batch 1, one fused multiply-add = one FLOP (as the papers' tables) · latency per batch, "
        "FPS = images/s · peak mem: " + ("CUDA max allocated" if cuda else "process peak RSS (incl. framework)"),
    ]
    if opts.precision == "fp16" and not cuda:
        lines.append("fp16 on the CPU: PyTorch has no fast fp16 CPU kernels, so bf16 autocast is used instead; "
                     "ONNX Runtime rows stay fp32")
    return lines


def write_csv(path: Path, rows: list[BenchRow]) -> Path:
    fields = [f.name for f in dataclasses.fields(BenchRow)]
    with atomic_write(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in dataclasses.asdict(r).items()})
    return path


def bench_document(opts: BenchOptions, rows: list[BenchRow]) -> dict:
    return {"protocol": protocol_header(opts), "device": str(opts.device), "batch": opts.batch,
            "precision": opts.precision, "e2e": opts.e2e, "warmup": opts.protocol.warmup,
            "iters": opts.protocol.iters, "min_time": opts.protocol.min_time,
            "rows": [dataclasses.asdict(r) for r in rows]}


def write_json(path: Path, doc: dict) -> Path:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def append_log(path: Path, header: list[str], rows: list[BenchRow]) -> Path:
    """Append a plain-text table to the shared log (like Ultralytics' benchmarks.log)."""
    widths = [max(len(h), *(len(cell(r, n, f)) for r in rows)) for n, h, f in COLUMNS]
    lines = header + ["  ".join(h.ljust(w) for (_, h, _), w in zip(COLUMNS, widths))]
    lines += ["  ".join(cell(r, n, f).ljust(w) for (n, _, f), w in zip(COLUMNS, widths)) for r in rows]
    with path.open("a") as f:
        f.write("\n".join(lines) + "\n\n")
    return path


def plot_scatter(rows: list[BenchRow], out_dir: Path) -> list[Path]:
    """FPS-vs-mIoU and params-vs-mIoU scatter plots (latency-vs-params when no row has an mIoU)."""
    import matplotlib  # noqa: PLC0415  (matplotlib costs ~0.5 s to import: only when plotting)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    ok = [r for r in rows if r.status == "✅"]
    with_miou = [r for r in ok if r.miou is not None]
    pairs = ([("fps", "FPS (images/s)", "fps_vs_miou.png"), ("params_m", "params (M)", "params_vs_miou.png")]
             if with_miou else [("params_m", "params (M)", "latency_vs_params.png")])
    paths = []
    for x_field, x_label, name in pairs:
        points = [(getattr(r, x_field), r.miou if with_miou else r.mean_ms, f"{r.model} {r.backend} {r.dtype}")
                  for r in (with_miou or ok) if getattr(r, x_field) is not None]
        fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
        for x, y, label in points:
            ax.scatter(x, y)
            ax.annotate(label, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(x_label)
        ax.set_ylabel("val mIoU (%)" if with_miou else "latency (ms)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / name)
        plt.close(fig)
        paths.append(out_dir / name)
    return paths
