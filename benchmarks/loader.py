"""Is the data loader or the model the bottleneck? Loader img/s (0/1/2 workers) vs train-step img/s.

Generates the synthetic orange dataset into a temp folder, builds the fastsegformer-p train pipeline exactly as
`segkd train` does (its preset's augmentation, normalisation and the seeded loader), and times:
- one epoch through the DataLoader per worker count, after a warm-up epoch (steady state; the first batch,
  which pays for worker start-up, is reported separately as latency);
- train steps of fastsegformer-p (forward + CE + backward + Adam) on batches already on the device.

    python benchmarks/loader.py [--images 96] [--size 320] [--batch 8] [--workers 0,1,2] [--steps 5]
                                [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from segkd.config import config_to_dict, load_config, size_hw
from segkd.data.augment import build_train_transform
from segkd.data.synthetic import generate_oranges
from segkd.data.transforms import Preprocess
from segkd.engine.device import select_device
from segkd.engine.loaders import AugmentedSamples, build_train_loader, open_split
from segkd.losses import build_loss
from segkd.models import build_model

PRESET = "fastsegformer-p"


def time_loader(cfg, workers: int, batch: int, pin: bool) -> dict:
    dataset = open_split(cfg.data, cfg.data.train_split, cfg.model.num_classes)
    size = size_hw(cfg.data.input_size)
    samples = AugmentedSamples(dataset, build_train_transform(cfg.augment, cfg.data, size),
                               Preprocess.from_config(cfg.data).normalize, seed=0)
    loader = build_train_loader(samples, batch_size=batch, workers=workers, seed=0, pin_memory=pin)
    start = time.perf_counter()
    next(iter(loader))  # worker start-up + first batch
    first = time.perf_counter() - start
    for _ in loader:  # warm-up epoch (persistent workers stay up)
        pass
    loader.sampler.set_epoch(1)
    images, t0 = 0, time.perf_counter()
    for x, _ in loader:  # timed epoch
        images += x.shape[0]
    seconds = time.perf_counter() - t0
    del loader
    return {"what": f"loader, workers={workers}", "img_s": images / seconds, "first_batch_s": first,
            "images": images}


def time_train_step(cfg, batch: int, steps: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = build_model(config_to_dict(cfg)["model"]).to(device).train()
    _, _, ce = build_loss(cfg.loss[0])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    h, w = size_hw(cfg.data.input_size)
    x = torch.rand(batch, 3, h, w, device=device)
    y = torch.randint(0, cfg.model.num_classes, (batch, h, w), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        ce(model(x), y).backward()
        optimizer.step()

    step()  # warm-up (allocations, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"what": f"train step ({device.type}, fp32)", "img_s": batch * steps / seconds, "first_batch_s": None,
            "images": batch * steps}


def run(images: int, size: int, batch: int, workers: list[int], steps: int, device: str) -> dict:
    dev = select_device(device)
    with tempfile.TemporaryDirectory(prefix="segkd-loader-bench-") as tmp:
        root = generate_oranges(Path(tmp) / "oranges", images, size, seed=0)
        cfg = load_config(PRESET, {"data.root": str(root)})
        rows = [time_loader(cfg, n, batch, dev.type == "cuda") for n in workers]
        rows.append(time_train_step(cfg, batch, steps, dev))
    h, w = size_hw(cfg.data.input_size)
    return {
        "preset": PRESET, "input_size": [h, w], "batch": batch, "source_size": size,
        "rows": rows,
        "machine": {"device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
                    "dtype": "fp32", "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96, help="synthetic images generated (60%% are train)")
    parser.add_argument("--size", type=int, default=320, help="side of the generated images")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
    parser.add_argument("--steps", type=int, default=5, help="timed train steps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run(args.images, args.size, args.batch, [int(w) for w in args.workers.split(",") if w],
                 args.steps, args.device)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"{PRESET}: data loader vs train step")
    for col in ("what", "img/s", "first batch (s)", "images"):
        table.add_column(col, justify="left" if col == "what" else "right")
    for r in report["rows"]:
        first = f"{r['first_batch_s']:.2f}" if r["first_batch_s"] is not None else "-"
        table.add_row(r["what"], f"{r['img_s']:.1f}", first, str(r["images"]))
    console = Console()
    console.print(table)
    m, (h, w) = report["machine"], report["input_size"]
    console.print(f"device={m['device']}{' (' + m['gpu'] + ')' if m['gpu'] else ''} dtype={m['dtype']} "
                  f"input={h}×{w} batch={report['batch']} source={report['source_size']}px "
                  f"cores={m['cores']} torch_threads={m['torch_threads']}")


if __name__ == "__main__":
    main()
