"""2 processes (DDP on gloo, CPU) with batch B each against 1 process with batch 2B: how close the final weights
and val mIoU are, with BatchNorm in the model and without it.

DDP averages the processes' gradients and `DistributedSampler` deals each process half of the same seeded
permutation, so every global step sees the same 2B images, with the same per-sample augmentation, as the single
process. What still differs: (1) BatchNorm normalises each process's B images with their own statistics, not
those of all 2B, and the running statistics kept are rank 0's; (2) the loss mean is taken per process, so
pixels the loss ignores weigh the two halves slightly differently; (3) floating-point summation order.
`norm=none` removes (1), which leaves (2) and (3) (the synthetic oranges have no ignored pixels at 64 px).

    python benchmarks/ddp_parity.py [--epochs 2] [--batch 4] [--images 32] [--json]

Each run is the real `segkd train` (this script re-runs itself as the CLI with its test model registered);
`train.devices=2` relaunches it under torchrun.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn

from segkd.cli import app
from segkd.data.synthetic import generate_oranges
from segkd.models import SegmentationModel, register_model

CLI_COMMANDS = ("train", "distill", "eval")


class ParityNet(SegmentationModel):
    """conv-norm-ReLU ×2 (stride 4) + 1×1 head; `norm` is "bn" (BatchNorm2d) or "none"."""

    size_divisor = 4

    def __init__(self, num_classes: int = 4, norm: str = "bn", width: int = 16):
        super().__init__()
        make_norm = (lambda c: nn.BatchNorm2d(c)) if norm == "bn" else (lambda c: nn.Identity())
        self.backbone = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), make_norm(width), nn.ReLU(),
                                      nn.Conv2d(width, width, 3, 2, 1), make_norm(width), nn.ReLU())
        self.head = nn.Conv2d(width, num_classes, 1)

    def _taps(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        feat = self.backbone(x)  # B×W×H/4×W/4
        return OrderedDict(stage1=feat, logits=self.head(feat))


@register_model
def parity_net(num_classes: int = 4, **kwargs) -> ParityNet:
    return ParityNet(num_classes, **kwargs)


def write_preset(path: Path, norm: str, epochs: int) -> Path:
    preset = {
        "model": {"arch": "parity_net", "num_classes": 4, "options": {"norm": norm}},
        "data": {"format": "voc", "input_size": 64, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                 "resize": "resize", "workers": 0},
        "train": {"epochs": epochs, "optimizer": "adam", "lr": 0.01, "scheduler": "constant", "device": "cpu",
                  "seed": 0},
        "augment": [{"op": "hflip", "p": 0.5}],
        "loss": [{"name": "ce", "weight": 1.0}],
    }
    path.write_text(yaml.safe_dump(preset, sort_keys=False))
    return path


def train_run(preset: Path, data: Path, project: Path, name: str, batch: int, devices: int) -> dict:
    args = [sys.executable, __file__, "train", "--preset", str(preset), f"data.root={data}", f"project={project}",
            f"name={name}", f"train.batch_size={batch}", f"train.devices={devices}", "--json"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "CI": "1"}  # one thread per process in both runs
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"{name}: segkd train failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def weight_gap(a: dict[str, Tensor], b: dict[str, Tensor]) -> dict[str, float]:
    """Max |Δ| and ‖Δ‖/‖a‖ over the float parameters and over the BatchNorm running statistics."""
    out = {}
    for kind, keys in (("weights", [k for k in a if not k.split(".")[-1].startswith(("running_", "num_"))]),
                       ("bn_stats", [k for k in a if k.split(".")[-1].startswith("running_")])):
        if not keys:
            out |= {f"{kind}_max_abs": None, f"{kind}_rel_l2": None}
            continue
        da = torch.cat([a[k].flatten().double() for k in keys])
        db = torch.cat([b[k].flatten().double() for k in keys])
        out |= {f"{kind}_max_abs": (da - db).abs().max().item(), f"{kind}_rel_l2": ((da - db).norm() / da.norm()).item()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4, help="per-process batch of the 2-process run")
    parser.add_argument("--images", type=int, default=40, help="synthetic oranges (6:2:2 split)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = generate_oranges(tmp / "oranges", args.images, (64, 64), 0)
        for norm in ("bn", "none"):
            preset = write_preset(tmp / f"{norm}.yaml", norm, args.epochs)
            one = train_run(preset, data, tmp / "runs", f"{norm}-1x{2 * args.batch}", 2 * args.batch, 1)
            two = train_run(preset, data, tmp / "runs", f"{norm}-2x{args.batch}", args.batch, 2)
            a = torch.load(one["last"], weights_only=True)["model"]
            b = torch.load(two["last"], weights_only=True)["model"]
            rows.append({"norm": norm, "miou_1proc": one["best_miou"], "miou_2proc": two["best_miou"],
                         "loss_1proc": one["final"]["train/loss"], "loss_2proc": two["final"]["train/loss"],
                         **weight_gap(a, b)})
    setup = {"device": "cpu", "backend": "gloo", "dtype": "fp32", "input": 64, "epochs": args.epochs,
             "batch": f"1×{2 * args.batch} vs 2×{args.batch}", "images": args.images}
    if args.json:
        print(json.dumps({"setup": setup, "rows": rows}, indent=2))
        return
    fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    print(f"{'norm':<5} {'mIoU 1 proc':>11} {'mIoU 2 proc':>11} {'loss 1 proc':>11} {'loss 2 proc':>11} "
          f"{'max|Δw|':>9} {'‖Δw‖/‖w‖':>9} {'max|Δbn|':>9}")
    for r in rows:
        print(f"{r['norm']:<5} {100 * r['miou_1proc']:>11.2f} {100 * r['miou_2proc']:>11.2f} {r['loss_1proc']:>11.5f} "
              f"{r['loss_2proc']:>11.5f} {fmt(r['weights_max_abs']):>9} {fmt(r['weights_rel_l2']):>9} "
              f"{fmt(r['bn_stats_max_abs']):>9}")
    print(", ".join(f"{k} {v}" for k, v in setup.items()))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in CLI_COMMANDS:  # a run (or a torchrun worker): segkd's CLI
        app(sys.argv[1:], prog_name="segkd")
    else:
        main()
