"""EfficientDet-seg: segkd's D4 against the AlexeyVision/EfficientDet_Segmentation model with the same weights, its
ONNX export, and every variant's size and cost.

1. The repository's `EfficientDetSegmentation` (from `--reference`, a checkout of the repository with hydra-core
   importable; never part of segkd) gets random weights, is saved as its DataParallel run saves it
   (`module.`-prefixed) and loaded into segkd's `efficientdet_d4_seg` with `load_weights`: max |Δlogit|.
2. `segkd export --preset efficientdet-d4-seg --weights <that file>` (its parity check is the export's own).
3. Eager PyTorch (repo vs segkd, batch 1, fp32, `torch.inference_mode`) and ONNX Runtime, timed interleaved in
   one run (`segkd.deploy.timing.measure_interleaved`) so host load hits each alike.
4. `--variants`: params and fvcore GFLOPs of D0-D7 with 21 classes at each one's input size. Every op's count is
   a·(H·W) except the squeeze-excite 1×1 convs (constant), so the count is fitted exactly from two small inputs
   (checked against a direct count at 512 for D0).

    python benchmarks/efficientdet_seg.py --reference /tmp/EfficientDet_Segmentation
    python benchmarks/efficientdet_seg.py --reference REPO --size 512 --iters 10 --min-time 5 --json
    python benchmarks/efficientdet_seg.py --variants
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch
import typer
from rich.table import Table

from segkd.commands.common import err, out, print_json
from segkd.deploy.backends import ort_runner
from segkd.deploy.timing import Protocol, measure_interleaved
from segkd.models import create_model, list_models, load_weights

from models import count_gflops  # benchmarks/models.py (the same fvcore settings)


@contextlib.contextmanager
def inside(folder: Path):
    """Import and run the reference from its checkout (it reads its Hydra configs by relative path)."""
    before = Path.cwd()
    sys.path.insert(0, str(folder))
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)
        sys.path.remove(str(folder))


def reference_d4(folder: Path) -> torch.nn.Module:
    """The repository's D4 with random weights and BN statistics (seeded), eval mode."""
    with inside(folder):
        from core.model.segmentation.efficientdet import EfficientDetSegmentation

        model = EfficientDetSegmentation(num_classes=21, backbone_pretrained=False)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
    return model.eval()


def segkd_export(weights: Path, size: int) -> dict:
    """`segkd export` on the repository's file; its JSON report."""
    cmd = [sys.executable, "-m", "segkd", "export", "--preset", "efficientdet-d4-seg", "--weights", str(weights),
           "--imgsz", str(size), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"segkd export failed ({done.returncode}): {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout)


def versus_reference(folder: Path, size: int, protocol: Protocol, rounds: int, work: Path) -> dict:
    ref = reference_d4(folder)
    weights = work / "model_2.pth"
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, weights)
    ours = create_model("efficientdet_d4_seg", num_classes=21)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the note about the dropped classifier head
        load_weights(ours, weights)
    ours.eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        diff = (ref(x) - ours(x)).abs().max().item()
    export = segkd_export(weights, size)
    onnx_path = next(a["path"] for a in export["artifacts"] if a["path"].endswith(".onnx"))
    ort = ort_runner(onnx_path, (1, 3, size, size), torch.device("cpu"), threads=torch.get_num_threads())

    def eager(model):
        def call():
            with torch.inference_mode():
                model(x)
        return call

    times = measure_interleaved({"repository (eager)": eager(ref), "segkd (eager)": eager(ours),
                                 "segkd (ONNX Runtime)": ort.forward}, protocol, rounds)
    return {"max_abs_diff": diff, "export": export,
            "latency_ms": {k: {"median": t.median, "mean": t.mean, "n": t.n} for k, t in times.items()}}


def variant_costs() -> list[dict]:
    rows = []
    for arch in list_models("efficientdet_d*_seg"):
        model = create_model(arch, num_classes=21).eval()
        size = model.default_cfg["input_size"][-1]
        small = [count_gflops(model, torch.rand(1, 3, s, s)) for s in (64, 128)]
        a = (small[1] - small[0]) / (128**2 - 64**2)  # GFLOPs per pixel; small[0] - a·64² is the SE constant
        row = {"arch": arch, "input": size, "params": sum(p.numel() for p in model.parameters()),
               "gflops": small[0] + a * (size**2 - 64**2)}
        if arch == "efficientdet_d0_seg":
            row["gflops_direct"] = count_gflops(model, torch.rand(1, 3, size, size))
        rows.append(row)
        err.print(f"{arch}: {row['params']:,} params, {row['gflops']:.2f} GFLOPs at {size}")
    return rows


def main(
    reference: Path = typer.Option(None, help="Checkout of AlexeyVision/EfficientDet_Segmentation (hydra-core "
                                              "importable): time segkd's D4 against it."),
    variants: bool = typer.Option(False, "--variants", help="Params and GFLOPs of D0-D7 at their input sizes."),
    size: int = typer.Option(512, help="Square input side for the D4 comparison."),
    iters: int = typer.Option(20, min=1, help="Timed calls per model (at least)."),
    min_time: float = typer.Option(6.0, help="Seconds of timed calls per model (at least)."),
    rounds: int = typer.Option(4, min=1, help="Interleaved rounds."),
    threads: int = typer.Option(os.cpu_count() or 1, min=1, help="torch and ONNX Runtime CPU threads."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
) -> None:
    """EfficientDet-seg D4 vs the repository (same weights), ONNX export + ONNX Runtime, D0-D7 sizes."""
    torch.set_num_threads(threads)
    setup = {"device": f"cpu ({platform.processor() or platform.machine()}, {threads} threads)", "dtype": "float32",
             "batch": 1, "input": [size, size], "torch": torch.__version__}
    doc: dict = {**setup}
    if reference is not None:
        with tempfile.TemporaryDirectory() as work:
            doc["d4"] = versus_reference(reference.resolve(), size, Protocol(1, iters, min_time), rounds, Path(work))
    if variants:
        doc["variants"] = variant_costs()
    if json_out:
        print_json(doc)
        return
    if "d4" in doc:
        d4 = doc["d4"]
        table = Table(title=f"EfficientDet-D4-seg at {size}×{size}: same weights")
        for col in ("runtime", "median ms", "mean ms", "calls", "vs repository"):
            table.add_column(col, justify="left" if col == "runtime" else "right")
        base = d4["latency_ms"]["repository (eager)"]["median"]
        for name, t in d4["latency_ms"].items():
            table.add_row(name, f"{t['median']:.1f}", f"{t['mean']:.1f}", str(t["n"]), f"{base / t['median']:.2f}×")
        out.print(table)
        parity = [a for a in d4["export"]["artifacts"] if a["path"].endswith(".onnx")][0]
        out.print(f"segkd vs repository max |Δlogit| {d4['max_abs_diff']:.2e} · segkd export: "
                  f"{json.dumps({k: v for k, v in parity.items() if k != 'path'})}")
    if "variants" in doc:
        table = Table(title="EfficientDet-seg, 21 classes")
        for col in ("model", "input", "params", "fvcore GFLOPs"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for r in doc["variants"]:
            table.add_row(r["arch"], f"{r['input']}×{r['input']}", f"{r['params']:,}", f"{r['gflops']:.2f}")
        out.print(table)
        d0 = doc["variants"][0]
        out.print(f"D0 at 512 counted directly: {d0['gflops_direct']:.2f} GFLOPs (fit: {d0['gflops']:.2f})")
    out.print(f"device {setup['device']} · dtype float32 · batch 1 · torch {torch.__version__}")


if __name__ == "__main__":
    typer.run(main)
