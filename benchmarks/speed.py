"""CPU speed of a preset's model: PyTorch eager vs a plain ONNX export vs segkd's export vs segkd's int8.

For each model at `--size` (default 224×224), batch 1, fp32, N threads (default 2), model only, random weights
(speed does not depend on them):
- `eager, as built`: the model straight from `build_model`, NCHW, `torch.inference_mode`;
- `eager`: the segkd model in PyTorch as `segkd bench` runs it (`segkd.deploy.backends.torch_runner`: BatchNorm
  folded, NCHW or channels_last by a probe, `torch.inference_mode`);
- `plain onnx`: `torch.onnx.export(model, x, dynamo=False, opset_version=17)` run by a default
  `onnxruntime.InferenceSession` (intra-op threads set to N);
- `segkd onnx`: `segkd.deploy.export.export_onnx` run with `segkd.deploy.onnx_model.session_options(N)`;
- `segkd int8 conv` / `segkd int8 all`: `segkd.deploy.quantize.quantize_int8` of that export with each op set
  of `INT8_OP_SETS` (Conv/MatMul only; every supported op), calibrated on synthetic orange images
  (`segkd.data.synthetic`), same session options. `segkd export --int8` builds both and keeps the faster
  one that stays within 0.5 val mIoU of fp32.
- `fastseg eager` (MobileNetV3 LR-ASPP presets, when the `fastseg` and `geffnet` packages are installed):
  fastseg's own `MobileV3Large` / `MobileV3Small` holding the same weights (loaded through segkd's fastseg key
  map), `torch.inference_mode`, timed in the same interleaved rounds as the segkd eager rows.
Every figure uses `segkd.deploy.timing.measure_interleaved`: warm-up, then ≥ iters calls and ≥ min-time seconds
split into interleaved rounds (the PyTorch methods among themselves, then the ONNX Runtime ones), so that load from
other processes on a shared machine affects the compared methods alike.

`--profile` adds, per ONNX file, ONNX Runtime's own profile: the share of kernel time by op type. It shows
how much of a graph is convolution (ONNX Runtime's NCHWc convs run near its SGEMM rate on this CPU), which
bounds what any fp32 graph rewrite can gain.

    python benchmarks/speed.py [--models fastsegformer-p,fastsegformer-e] [--size 224,224] [--threads 2]
                               [--iters 100] [--warmup 10] [--min-time 2] [--rounds 5] [--calib 32] [--no-int8]
                               [--profile] [--json]
    python benchmarks/speed.py --models mobilev3-large-lraspp --size 1024,2048 --iters 10 --min-time 1
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from rich.console import Console
from rich.table import Table

from segkd.config import config_to_dict, load_config, preset_names
from segkd.data.io import read_image
from segkd.data.synthetic import generate_oranges
from segkd.deploy.backends import torch_runner
from segkd.deploy.bench_report import device_name
from segkd.deploy.export import export_onnx
from segkd.deploy.meta import DeployMeta
from segkd.deploy.onnx_model import session_options
from segkd.deploy.quantize import INT8_OP_SETS, quantize_int8
from segkd.deploy.timing import Protocol, measure_interleaved
from segkd.models import build_model
from segkd.models.lraspp import ASPP, MobileNetV3LRASPP, reference_keys

REFERENCE_MS = {"fastsegformer-p": {"eager": 60.0, "plain onnx": 31.0},  # measured on this machine (the brief)
                "fastsegformer-e": {"eager": 38.0, "plain onnx": 12.0}}


def model_config(name: str) -> dict:
    """The preset, or FastSegFormer-P's preset with the architecture swapped (same data config)."""
    if name in preset_names():
        return config_to_dict(load_config(name))
    return config_to_dict(load_config("fastsegformer-p", [f"model.arch={name.replace('-', '_')}"]))


def plain_export(model: torch.nn.Module, path: Path, hw: tuple[int, int]) -> Path:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, *hw),), str(path), dynamo=False, opset_version=17,
                          input_names=["images"], output_names=["logits"])
    return path


def ort_call(path: Path, options: ort.SessionOptions, x: np.ndarray):
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"images": x})


def fastseg_twin(model: torch.nn.Module) -> torch.nn.Module | None:
    """fastseg's own model holding `model`'s weights (a MobileNetV3 LR-ASPP, fastseg installed), else None."""
    if not isinstance(model, MobileNetV3LRASPP) or importlib.util.find_spec("fastseg") is None:
        return None
    import fastseg  # noqa: PLC0415  (optional package, only for this comparison)
    import fastseg.model.utils as fastseg_utils  # noqa: PLC0415
    from fastseg.model import mobilenetv3  # noqa: PLC0415

    for trunk in ("MobileNetV3_Large", "MobileNetV3_Small"):  # fastseg always asks geffnet for ImageNet weights
        setattr(fastseg_utils, trunk, lambda pretrained, cls=getattr(mobilenetv3, trunk): cls(pretrained=False))
    large = model.backbone.model_name == "tf_mobilenetv3_large_100"
    twin = (fastseg.MobileV3Large if large else fastseg.MobileV3Small)(
        model.head.out_channels, num_filters=model.head.in_channels, use_aspp=isinstance(model.decoder.aspp, ASPP))
    state = model.state_dict()
    twin.load_state_dict({ref: state[ours] for ours, ref in reference_keys(model).items()})
    return twin.eval()


def fastseg_runs(twin: torch.nn.Module, x: torch.Tensor) -> bool:
    """Whether fastseg's model runs at x's size (its fixed 49×49 pooling fails below about 385 px)."""
    try:
        with torch.inference_mode():
            twin(x)
    except RuntimeError as e:
        print(f"fastseg eager skipped at {tuple(x.shape[2:])}: {str(e).splitlines()[0]}")
        return False
    return True


def bench_model(name: str, threads: int, protocol: Protocol, rounds: int, calib: list[np.ndarray], tmp: Path,
                hw: tuple[int, int] = (224, 224), int8: bool = True, profile: bool = False) -> list[dict]:
    config = model_config(name)
    torch.manual_seed(0)
    model = build_model(config["model"]).eval()
    meta = DeployMeta.from_config(config).replace(input_size=list(hw))  # calibration images at the timed size
    x = torch.randn(1, 3, *hw)
    plain_options = ort.SessionOptions()
    plain_options.intra_op_num_threads = threads
    segkd_path = export_onnx(model, meta, tmp / f"{name}.onnx", imgsz=hw).path
    int8_paths = {ops: quantize_int8(segkd_path, tmp / f"{name}.int8.{ops}.onnx", meta, calib, op_types=types).path
                  for ops, types in INT8_OP_SETS.items()} if int8 else {}
    eager = {"eager, as built": lambda: model(x),
             "eager": torch_runner(model, (1, 3, *hw), torch.device("cpu")).forward}
    twin = fastseg_twin(model)
    if twin is not None and fastseg_runs(twin, x):
        eager["fastseg eager"] = lambda: twin(x)
    # PyTorch's and ORT's thread pools are not interleaved: each spins for a while after its own work and would
    # slow the other down
    with torch.inference_mode():
        times = measure_interleaved(eager, protocol, rounds)
    onnx_files = {"plain onnx": (plain_export(model, tmp / f"{name}.plain.onnx", hw), plain_options),
                  "segkd onnx": (segkd_path, session_options(threads)),
                  **{f"segkd int8 {ops}": (path, session_options(threads)) for ops, path in int8_paths.items()}}
    onnx_calls = {method: ort_call(path, options, x.numpy()) for method, (path, options) in onnx_files.items()}
    times.update(measure_interleaved(onnx_calls, protocol, rounds))
    shares = {method: op_shares(path, options, x.numpy()) for method, (path, options) in onnx_files.items()
              } if profile else {}
    rows = []
    for method, t in times.items():
        rows.append({"model": name, "method": method, "mean_ms": t.mean, "median_ms": t.median, "p90_ms": t.p90,
                     "min_ms": min(t.times_ms),
                     "fps": t.fps, "iters": t.n, "reference_ms": REFERENCE_MS.get(name, {}).get(method),
                     "op_shares": shares.get(method)})
    by = {r["method"]: r["median_ms"] for r in rows}
    for r in rows:
        r["speedup_vs_plain"] = by["plain onnx"] / r["median_ms"]
        r["speedup_vs_segkd"] = by["segkd onnx"] / r["median_ms"]
    return rows


def op_shares(path: Path, options: ort.SessionOptions, x: np.ndarray, calls: int = 30) -> dict[str, float]:
    """Share of ONNX Runtime kernel time per op type over `calls` runs (after 5 warm-up runs)."""
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    options.enable_profiling = False
    for _ in range(5 + calls):
        session.run(None, {"images": x})
    trace = session.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    time_by_op: Counter = Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            time_by_op[e["args"]["op_name"]] += e["dur"]
    total = sum(time_by_op.values())
    return {op: t / total for op, t in time_by_op.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="fastsegformer-p,fastsegformer-e")
    parser.add_argument("--size", default="224,224", help="input H,W")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 rows (calibration is slow at 2 MP)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the timed calls are split into")
    parser.add_argument("--calib", type=int, default=32, help="synthetic images for int8 calibration")
    parser.add_argument("--profile", action="store_true", help="ONNX Runtime time shares by op type")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = Protocol(args.warmup, args.iters, args.min_time)
    hw = tuple(int(v) for v in args.size.split(","))
    header = (f"device cpu ({device_name(torch.device('cpu'))}), {args.threads} threads · torch {torch.__version__} · "
              f"onnxruntime {ort.__version__} · fp32 (int8 rows: QDQ U8S8) · {hw[0]}×{hw[1]} · batch 1 · model only · "
              f"warm-up {args.warmup}, ≥{args.iters} calls and ≥{args.min_time:g} s in {args.rounds} interleaved rounds · "
              f"speed-up = median / median")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_oranges(Path(tmp) / "oranges", n_images=args.calib, size=(256, 256))
        calib = [read_image(p) for p in sorted((Path(data) / "JPEGImages").glob("*.jpg"))]
        for name in args.models.split(","):
            rows += bench_model(name.strip(), args.threads, protocol, args.rounds, calib, Path(tmp), hw,
                                not args.no_int8, args.profile)
    if args.json:
        print(json.dumps({"protocol": header, "rows": rows}, indent=2))
        return
    console = Console()
    console.print(header)
    table = Table(title="segkd CPU speed")
    for col in ("model", "method", "mean ms", "median ms", "p90 ms", "min ms", "FPS", "× vs plain onnx",
                "× vs segkd onnx", "reference ms"):
        table.add_column(col, justify="left" if col in ("model", "method") else "right")
    for r in rows:
        ref = r["reference_ms"]
        table.add_row(r["model"], r["method"], f"{r['mean_ms']:.1f}", f"{r['median_ms']:.1f}", f"{r['p90_ms']:.1f}",
                      f"{r['min_ms']:.1f}",
                      f"{r['fps']:.1f}", f"{r['speedup_vs_plain']:.2f}", f"{r['speedup_vs_segkd']:.2f}",
                      "-" if ref is None else f"{ref:.0f}")
    console.print(table)
    if args.profile:
        console.print(profile_table(rows))


def profile_table(rows: list[dict], top: int = 6) -> Table:
    table = Table(title="ONNX Runtime kernel time by op type (share of the model's total)")
    for col in ("model", "method", "ops"):
        table.add_column(col)
    for r in rows:
        if r["op_shares"]:
            ops = "  ".join(f"{op} {share:.0%}" for op, share in list(r["op_shares"].items())[:top])
            table.add_row(r["model"], r["method"], ops)
    return table


if __name__ == "__main__":
    main()
