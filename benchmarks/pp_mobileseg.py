"""PP-MobileSeg-Base/-Tiny rows: params, fvcore GFLOPs, eager and ONNX Runtime CPU latency at 512×512.

150 classes (ADE20K), batch 1, fp32, N threads, random weights. Latency: the median of
`segkd.deploy.timing.measure_interleaved` (eager `forward` vs the `segkd.deploy.export.export_onnx` logits graph
in alternating rounds). fvcore counts one multiply-add as one flop. These are the rows benchmarks/models.py
would hold; they live here while that file is being reworked in another branch.

    python benchmarks/pp_mobileseg.py [--threads 2] [--iters 10] [--min-time 2] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch
from fvcore.nn import FlopCountAnalysis
from rich.console import Console
from rich.table import Table

from segkd.config import config_to_dict, load_config
from segkd.deploy.bench_report import device_name
from segkd.deploy.export import export_onnx
from segkd.deploy.meta import DeployMeta
from segkd.deploy.onnx_model import session_options
from segkd.deploy.timing import Protocol, measure_interleaved
from segkd.models import create_model

ARCHS = ("pp_mobileseg_base", "pp_mobileseg_tiny")
NUM_CLASSES, SIZE = 150, 512


def gflops(model: torch.nn.Module, x: torch.Tensor) -> float:
    flops = FlopCountAnalysis(model, x)
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    return flops.total() / 1e9


def measure(arch: str, args: argparse.Namespace, tmp: Path) -> dict:
    model = create_model(arch, num_classes=NUM_CLASSES).eval()
    x = torch.rand(1, 3, SIZE, SIZE)
    meta = DeployMeta.from_config(config_to_dict(load_config(arch.replace("_", "-"), [f"data.input_size={SIZE}"])))
    path = export_onnx(model, meta, tmp / f"{arch}.onnx").path
    session = ort.InferenceSession(str(path), session_options(args.threads), providers=["CPUExecutionProvider"])
    feed = {"images": x.numpy()}
    with torch.inference_mode():
        times = measure_interleaved({"eager": lambda: model(x), "onnxruntime": lambda: session.run(None, feed)},
                                    Protocol(args.warmup, args.iters, args.min_time), args.rounds)
        cost = gflops(model, x)
    return dict(arch=arch, params=sum(p.numel() for p in model.parameters()), gflops=cost,
                eager_ms=times["eager"].median, onnxruntime_ms=times["onnxruntime"].median)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(arch, args, Path(tmp)) for arch in ARCHS]
    setup = dict(device=device_name(torch.device("cpu")), threads=args.threads, dtype="float32", batch=1,
                 input=[SIZE, SIZE], num_classes=NUM_CLASSES, torch=torch.__version__, onnxruntime=ort.__version__)
    if args.json:
        print(json.dumps({**setup, "rows": rows}, indent=2))
        return
    table = Table(title=f"PP-MobileSeg ({NUM_CLASSES} classes, {SIZE}×{SIZE})")
    for col in ("model", "params", "fvcore GFLOPs", "eager (ms)", "onnxruntime (ms)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(r["arch"], f"{r['params']:,}", f"{r['gflops']:.3f}", f"{r['eager_ms']:.1f}",
                      f"{r['onnxruntime_ms']:.1f}")
    console = Console(width=120)
    console.print(table)
    console.print(f"device {setup['device']} · {args.threads} threads · float32 · batch 1 · input {SIZE}×{SIZE} · "
                  f"median ms, interleaved · torch {torch.__version__} · onnxruntime {ort.__version__}")


if __name__ == "__main__":
    main()
