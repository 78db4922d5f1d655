"""Size, cost and CPU speed of every segkd model family: params, fvcore GFLOPs, eager and ONNX Runtime latency.

Every FastSegFormer variant (P/E × MSP/PPM × IRB on/off) at 224, the Swin-T-Att-UNet teacher at 512, SegFormer
B0-B3 at 512, fastseg's MobileNetV3-Large/Small LR-ASPP (each released head width) at 512×1024, PP-MobileSeg
Base/Tiny at 512 (VIM at 150 classes: benchmarks/vim.py), EfficientDet-D0/D4-seg at 512 (the D4 comparison with
the reference repository: benchmarks/efficientdet_seg.py), and one row at 64×64 for any other registered family
(so a new family is measured before anyone lists it here). Latency: batch 1,
fp32, random weights, the median of `--runs` timed calls after `--warmup` untimed ones (`segkd.deploy.timing`):
eager = the model in `torch.inference_mode`; ORT = `segkd.deploy.export.export_onnx` (fixed size) run by ONNX
Runtime with `segkd.deploy.onnx_model.session_options(threads)`. `--no-onnx` skips the ORT column.

    python benchmarks/models.py                   # rich table + one line with device, dtype, input, batch
    python benchmarks/models.py --json            # the same figures as one JSON document on stdout
    python benchmarks/models.py --only 'fastsegformer_*' --runs 30
    python benchmarks/models.py --only 'mobilev3*' --runs 5 --threads 2

fvcore counts one multiply-add as one flop (its "GFLOPs" are GMACs) and skips ops it has no handle for
(e.g. fused attention); the spec's figures are fvcore's too.
"""

from __future__ import annotations

import fnmatch
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime as ort
import torch
import typer
from fvcore.nn import FlopCountAnalysis
from rich.table import Table

from segkd.commands.common import err, out, print_json
from segkd.deploy.export import export_onnx
from segkd.deploy.meta import DeployMeta
from segkd.deploy.onnx_model import session_options
from segkd.deploy.timing import Protocol, measure
from segkd.models import create_model, list_models, model_family


NUM_CLASSES = 4


@dataclass(frozen=True)
class Entry:
    name: str
    arch: str
    size: tuple[int, int]
    options: dict = field(default_factory=dict)


def entries() -> list[Entry]:
    """The benchmarked models, each family's released configuration first."""
    rows = []
    for arch in ("fastsegformer_p", "fastsegformer_e"):
        for pyramid in ("msp", "ppm"):
            for detail in (True, False):
                label = f"{arch} {pyramid}{' +IRB' if detail else ''}"
                rows.append(Entry(label, arch, (224, 224), {"pyramid": pyramid, "detail_branch": detail}))
    rows.append(Entry("swin_t_att_unet", "swin_t_att_unet", (512, 512)))
    rows += [Entry(arch, arch, (512, 512)) for arch in list_models("segformer_b[0-3]")]
    for arch, widths in (("mobilev3_large_lraspp", (128, 256)), ("mobilev3_small_lraspp", (64, 128, 256))):
        rows += [Entry(f"{arch} F={f}", arch, (512, 1024), {"num_filters": f}) for f in widths]
    rows += [Entry(arch, arch, (512, 512)) for arch in ("pp_mobileseg_base", "pp_mobileseg_tiny")]
    rows += [Entry(arch, arch, (512, 512)) for arch in list_models("efficientdet_d[04]_seg")]
    covered = {model_family(e.arch) for e in rows}
    for arch in list_models():
        if model_family(arch) not in covered:  # a family added later, measured before anyone lists it
            rows.append(Entry(arch, arch, (64, 64)))
            covered.add(model_family(arch))
    return rows


def count_gflops(model: torch.nn.Module, x: torch.Tensor) -> float:
    flops = FlopCountAnalysis(model, x)
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    return flops.total() / 1e9


def ort_latency_ms(model: torch.nn.Module, entry: Entry, x: torch.Tensor, protocol: Protocol, threads: int) -> float:
    """segkd's ONNX export of `model` at the entry's size, timed in ONNX Runtime."""
    meta = DeployMeta(entry.arch, NUM_CLASSES, [], [], list(entry.size))
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, meta, Path(tmp) / "model.onnx").path
        session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    return measure(lambda: session.run(None, feed), protocol).median


def measure_entry(entry: Entry, protocol: Protocol, threads: int, onnx: bool) -> dict:
    model = create_model(entry.arch, num_classes=NUM_CLASSES, **entry.options).eval()
    x = torch.rand(1, 3, *entry.size)
    with torch.inference_mode():
        eager_ms = measure(lambda: model(x), protocol).median
    return {
        "name": entry.name, "arch": entry.arch, "options": entry.options, "input": list(entry.size),
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": count_gflops(model, x),
        "eager_ms": eager_ms,
        "ort_ms": ort_latency_ms(model, entry, x, protocol, threads) if onnx else None,
    }


def main(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document instead of the table."),
    runs: int = typer.Option(30, min=1, help="Timed forwards per model (the median is reported)."),
    warmup: int = typer.Option(5, min=0, help="Untimed forwards before timing."),
    only: str = typer.Option("*", help="Glob on the row names, e.g. 'fastsegformer_e*'."),
    threads: int = typer.Option(os.cpu_count() or 1, min=1, help="CPU threads of torch and ONNX Runtime."),
    onnx: bool = typer.Option(True, "--onnx/--no-onnx", help="Also time segkd's ONNX export in ONNX Runtime."),
) -> None:
    """Params, fvcore GFLOPs and median CPU latency (eager, ONNX Runtime) of segkd's models.

    Example: python benchmarks/models.py --only 'fastsegformer_*' --json
    """
    torch.set_num_threads(threads)
    protocol = Protocol(warmup=warmup, iters=runs, min_time=0.0)
    selected = [e for e in entries() if fnmatch.fnmatch(e.name, only)]
    results = []
    for entry in selected:
        err.print(f"measuring {entry.name} at {entry.size[0]}×{entry.size[1]} ...")
        results.append(measure_entry(entry, protocol, threads, onnx))
    setup = {
        "device": f"cpu ({platform.processor() or platform.machine()}, {threads} threads)", "dtype": "float32",
        "batch": 1, "runs": runs, "warmup": warmup, "torch": torch.__version__, "onnxruntime": ort.__version__,
    }
    if json_out:
        print_json({**setup, "models": results})
        return
    table = Table(title="segkd models")
    for col in ("model", "input", "params (M)", "fvcore GFLOPs", "eager ms", "ORT ms"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        ort_ms = "-" if r["ort_ms"] is None else f"{r['ort_ms']:.1f}"
        table.add_row(r["name"], f"{r['input'][0]}×{r['input'][1]}", f"{r['params'] / 1e6:.3f}",
                      f"{r['gflops']:.3f}", f"{r['eager_ms']:.1f}", ort_ms)
    out.print(table)
    out.print(f"device {setup['device']} · dtype float32 · batch 1 · input per row · median of {runs} runs "
              f"after {warmup} warm-up · torch {torch.__version__} · onnxruntime {ort.__version__}")


if __name__ == "__main__":
    typer.run(main)
