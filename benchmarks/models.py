"""Size, cost and CPU speed of segkd's models: params, fvcore GFLOPs and eager latency.

Every FastSegFormer variant (P/E × MSP/PPM × IRB on/off) at 224, the Swin-T-Att-UNet teacher at 512, the
SegFormer B0-B3 models at 512 when that family is registered, and EfficientDet-D0/D4-seg at 512 (their ONNX Runtime
latency and the D4 comparison with the reference repository: benchmarks/efficientdet_seg.py). Latency: batch 1,
fp32, `torch.inference_mode`, the median of `--runs` timed forwards after `--warmup` untimed ones, torch using
every core.

    python benchmarks/models.py                   # rich table + one line with device, dtype, input, batch
    python benchmarks/models.py --json            # the same figures as one JSON document on stdout
    python benchmarks/models.py --only 'fastsegformer_*' --runs 30

fvcore counts one multiply-add as one flop (its "GFLOPs" are GMACs) and skips ops it has no handle for
(e.g. fused attention); the spec's figures are fvcore's too.
"""

from __future__ import annotations

import fnmatch
import os
import platform
import statistics
import time
from dataclasses import dataclass, field

import torch
import typer
from fvcore.nn import FlopCountAnalysis
from rich.table import Table

from segkd.commands.common import err, out, print_json
from segkd.models import create_model, list_models


@dataclass(frozen=True)
class Entry:
    name: str
    arch: str
    size: int
    options: dict = field(default_factory=dict)


def entries() -> list[Entry]:
    """The benchmarked models, FastSegFormer's released configuration first in each group."""
    rows = []
    for arch in ("fastsegformer_p", "fastsegformer_e"):
        for pyramid in ("msp", "ppm"):
            for detail in (True, False):
                label = f"{arch} {pyramid}{' +IRB' if detail else ''}"
                rows.append(Entry(label, arch, 224, {"pyramid": pyramid, "detail_branch": detail}))
    rows.append(Entry("swin_t_att_unet", "swin_t_att_unet", 512))
    rows += [Entry(arch, arch, 512) for arch in list_models("segformer_b[0-3]")]
    rows += [Entry(arch, arch, 512) for arch in list_models("efficientdet_d[04]_seg")]
    return rows


def count_gflops(model: torch.nn.Module, x: torch.Tensor) -> float:
    flops = FlopCountAnalysis(model, x)
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    return flops.total() / 1e9


def median_latency_ms(model: torch.nn.Module, x: torch.Tensor, runs: int, warmup: int) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def measure(entry: Entry, runs: int, warmup: int) -> dict:
    model = create_model(entry.arch, num_classes=4, **entry.options).eval()
    x = torch.rand(1, 3, entry.size, entry.size)
    return {
        "name": entry.name, "arch": entry.arch, "options": entry.options, "input": [entry.size, entry.size],
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": count_gflops(model, x),
        "latency_ms": median_latency_ms(model, x, runs, warmup),
    }


def main(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document instead of the table."),
    runs: int = typer.Option(30, min=1, help="Timed forwards per model (the median is reported)."),
    warmup: int = typer.Option(5, min=0, help="Untimed forwards before timing."),
    only: str = typer.Option("*", help="Glob on the row names, e.g. 'fastsegformer_e*'."),
    threads: int = typer.Option(os.cpu_count() or 1, min=1, help="torch CPU threads (default: every core)."),
) -> None:
    """Params, fvcore GFLOPs and median CPU latency of segkd's models.

    Example: python benchmarks/models.py --only 'fastsegformer_*' --json
    """
    torch.set_num_threads(threads)
    selected = [e for e in entries() if fnmatch.fnmatch(e.name, only)]
    results = []
    for entry in selected:
        err.print(f"measuring {entry.name} at {entry.size}×{entry.size} ...")
        results.append(measure(entry, runs, warmup))
    setup = {
        "device": f"cpu ({platform.processor() or platform.machine()}, {threads} threads)", "dtype": "float32",
        "batch": 1, "runs": runs, "warmup": warmup, "torch": torch.__version__,
    }
    if json_out:
        print_json({**setup, "models": results})
        return
    table = Table(title="segkd models")
    for col in ("model", "input", "params (M)", "fvcore GFLOPs", "CPU latency (ms)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        table.add_row(r["name"], f"{r['input'][0]}×{r['input'][1]}", f"{r['params'] / 1e6:.3f}",
                      f"{r['gflops']:.3f}", f"{r['latency_ms']:.1f}")
    out.print(table)
    out.print(f"device {setup['device']} · dtype float32 · batch 1 · input per row · median of {runs} runs "
              f"after {warmup} warm-up · torch {torch.__version__}")


if __name__ == "__main__":
    typer.run(main)
