"""PP-MobileSeg's VIM (valid-interpolate module) vs full upsample + argmax, CPU, 150 classes at 512×512.

Rows (batch 1, fp32, N threads, every figure from `segkd.deploy.timing.measure_interleaved`, so the two ways of
each row are timed in alternating rounds and host load hits both alike):
- `final step, eager`: on B×150×64×64 logits (Base's head resolution) in which 15 classes win (Voronoi regions,
  about as many as an ADE20K image has, spec §5): `F.interpolate(→512²).argmax(1)` vs `vim_labels`;
- `final step, onnxruntime`: the same two functions exported (TorchScript exporter, opset 17) and run by ONNX
  Runtime (`segkd.deploy.onnx_model.session_options`);
- `whole model, eager` / `whole model, onnxruntime`: `pp_mobileseg_base.predict_labels` with
  `upsample="interpolate"` vs `"vim"` (random weights, with the same 15-region logits added to the classifier's
  output, see `scene_model`), and the `segkd.deploy.export.export_onnx(argmax=True)` graph of each.
`identical %`: pixels where VIM's label equals the full argmax's, over the timed input.

    python benchmarks/vim.py [--threads 2] [--iters 20] [--min-time 2] [--rounds 4] [--present 15] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

from segkd.config import config_to_dict, load_config
from segkd.deploy.bench_report import device_name
from segkd.deploy.export import export_onnx
from segkd.deploy.meta import DeployMeta
from segkd.deploy.onnx_model import session_options
from segkd.deploy.timing import Protocol, measure_interleaved
from segkd.models import create_model
from segkd.models.pp_mobileseg import vim_labels

NUM_CLASSES, SIZE, HEAD_STRIDE = 150, 512, 8


class FullStep(nn.Module):
    def forward(self, logits: Tensor) -> Tensor:  # B×K×h×w -> B×H×W
        return F.interpolate(logits, size=(SIZE, SIZE), mode="bilinear", align_corners=False).argmax(1)


class VimStep(nn.Module):
    def forward(self, logits: Tensor) -> Tensor:  # B×K×h×w -> B×H×W
        return vim_labels(logits, (SIZE, SIZE))


def region_logits(present: int, seed: int = 0) -> Tensor:
    """1×K×h×w logits whose argmax is a Voronoi map of `present` random classes (noise 0.5, margin 4)."""
    gen = torch.Generator().manual_seed(seed)
    h = SIZE // HEAD_STRIDE
    classes = torch.randperm(NUM_CLASSES, generator=gen)[:present]
    seeds = torch.rand(present, 2, generator=gen) * h
    yx = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(h), indexing="ij"), -1).float()  # h×h×2
    region = torch.cdist(yx.view(-1, 2), seeds).argmin(1).view(h, h)
    logits = 0.5 * torch.randn(1, NUM_CLASSES, h, h, generator=gen)
    logits[0, classes[region], torch.arange(h)[:, None], torch.arange(h)[None]] += 4.0
    return logits


def onnx_session(module: nn.Module, x: Tensor, path: Path, threads: int) -> ort.InferenceSession:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def identical(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    return 100.0 * float((np.asarray(a) == np.asarray(b)).mean())


def time_pair(calls: dict, protocol: Protocol, rounds: int) -> dict[str, float]:
    return {name: t.median for name, t in measure_interleaved(calls, protocol, rounds).items()}


def scene_model(scene: Tensor, upsample: str) -> nn.Module:
    """pp_mobileseg_base whose classifier output gets `scene` added (a forward hook, traced into the ONNX graph
    too): a randomly initialised model's logits are nearly constant, a trained one's are not."""
    torch.manual_seed(0)
    model = create_model("pp_mobileseg_base", num_classes=NUM_CLASSES, upsample=upsample).eval()
    model.head.conv_seg.register_forward_hook(lambda module, inputs, out: out + scene)  # B×K×h×w
    return model


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    protocol = Protocol(warmup=args.warmup, iters=args.iters, min_time=args.min_time)
    rows = []
    logits = region_logits(args.present)
    with torch.inference_mode():
        full, vim = FullStep()(logits), VimStep()(logits)
        times = time_pair({"full": lambda: FullStep()(logits), "vim": lambda: VimStep()(logits)}, protocol,
                          args.rounds)
    present = int(logits.argmax(1).unique().numel())
    rows.append(dict(name="final step, eager", present=present, **times, identical=identical(full, vim)))
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {name: onnx_session(m, logits, Path(tmp) / f"{name}.onnx", args.threads)
                    for name, m in (("full", FullStep()), ("vim", VimStep()))}
        feed = {"x": logits.numpy()}
        got = {name: s.run(None, feed)[0] for name, s in sessions.items()}
        assert np.array_equal(got["vim"], vim.numpy()) and np.array_equal(got["full"], full.numpy())
        times = time_pair({n: (lambda s=s: s.run(None, feed)) for n, s in sessions.items()}, protocol, args.rounds)
        rows.append(dict(name="final step, onnxruntime", present=present, **times,
                         identical=identical(got["full"], got["vim"])))

        models = {name: scene_model(logits, mode) for name, mode in (("full", "interpolate"), ("vim", "vim"))}
        x = torch.randn(1, 3, SIZE, SIZE)
        with torch.inference_mode():
            labels = {n: m.predict_labels(x) for n, m in models.items()}
            present = int(models["vim"].head_taps(x)["logits"].argmax(1).unique().numel())
            times = time_pair({n: (lambda m=m: m.predict_labels(x)) for n, m in models.items()}, protocol,
                              args.rounds)
        rows.append(dict(name="whole model, eager", present=present, **times,
                         identical=identical(labels["full"], labels["vim"])))
        cfg = config_to_dict(load_config("pp-mobileseg-base", [f"data.input_size={SIZE}"]))
        meta = DeployMeta.from_config(cfg)
        paths = {n: export_onnx(m, meta, Path(tmp) / f"model_{n}.onnx", argmax=True).path for n, m in models.items()}
        sessions = {n: ort.InferenceSession(str(p), session_options(args.threads), providers=["CPUExecutionProvider"])
                    for n, p in paths.items()}
        feed = {"images": x.numpy()}
        got = {n: s.run(None, feed)[0] for n, s in sessions.items()}
        times = time_pair({n: (lambda s=s: s.run(None, feed)) for n, s in sessions.items()}, protocol, args.rounds)
        rows.append(dict(name="whole model, onnxruntime", present=present, **times,
                         identical=identical(got["full"], got["vim"]),
                         onnx_vs_torch_vim=identical(got["vim"], labels["vim"])))
    for row in rows:
        row["speedup"] = row["full"] / row["vim"]
    setup = dict(device=device_name(torch.device("cpu")), threads=args.threads, dtype="float32", batch=1, input=[SIZE, SIZE],
                 num_classes=NUM_CLASSES, head_stride=HEAD_STRIDE, torch=torch.__version__,
                 onnxruntime=ort.__version__, iters=args.iters, min_time=args.min_time, rounds=args.rounds)
    return {**setup, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--present", type=int, default=15, help="classes that can win (ADE20K: ~15 of 150)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"VIM vs full upsample + argmax ({NUM_CLASSES} classes, {SIZE}×{SIZE})")
    for col in ("step", "classes present", "full (ms)", "VIM (ms)", "speed-up", "identical %"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for r in result["rows"]:
        table.add_row(r["name"], str(r["present"]), f"{r['full']:.2f}", f"{r['vim']:.2f}", f"{r['speedup']:.2f}×",
                      f"{r['identical']:.3f}")
    console = Console(width=120)
    console.print(table)
    console.print(f"device {result['device']} · {args.threads} threads · float32 · batch 1 · input {SIZE}×{SIZE} · "
                  f"median ms, interleaved ({args.rounds} rounds, ≥ {args.iters} calls, ≥ {args.min_time} s) · "
                  f"torch {torch.__version__} · onnxruntime {ort.__version__}")


if __name__ == "__main__":
    main()
