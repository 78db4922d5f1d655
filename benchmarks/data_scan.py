"""Time the data scan that runs before training (`segkd.data.scan`) on a generated VOC tree: cold and cached.

Builds N image/mask pairs (tiny 32×32 PNG images and class-index masks, every file real and decodable) with
train/val lists in a temp folder, then times, side by side in one run:
- cold: `scan_splits` with no cache (every image header and end marker read, every mask decoded and checked);
- cached: the same call again on unchanged files (every file stat()ed, nothing opened);
- cached, new process: `scan_splits` in a fresh Python process (imports excluded, the time of the call only).

    python benchmarks/data_scan.py [--pairs 10000] [--workers N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from segkd.data import open_dataset
from segkd.data.scan import scan_splits
from segkd.deploy.bench_report import device_name

SIZE = 32
CHILD = """
import sys, time
from segkd.data import open_dataset
from segkd.data.scan import scan_splits
root = sys.argv[1]
sets = {s: open_dataset(root, s, num_classes=4) for s in ("train", "val")}
start = time.perf_counter()
scan_splits(sets, log=lambda m: None)
print(time.perf_counter() - start)
"""


def build_tree(root: Path, pairs: int) -> None:
    images, masks, lists = root / "JPEGImages", root / "SegmentationClass", root / "ImageSets" / "Segmentation"
    for folder in (images, masks, lists):
        folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    image = cv2.imencode(".png", rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))[1].tobytes()
    mask = cv2.imencode(".png", rng.integers(0, 4, (SIZE, SIZE), dtype=np.uint8))[1].tobytes()
    stems = [f"img_{i:06d}" for i in range(pairs)]
    for stem in stems:
        (images / f"{stem}.png").write_bytes(image)
        (masks / f"{stem}.png").write_bytes(mask)
    n_val = pairs // 5
    (lists / "train.txt").write_text("\n".join(stems[n_val:]) + "\n")
    (lists / "val.txt").write_text("\n".join(stems[:n_val]) + "\n")


def scan(root: Path, workers: int | None) -> float:
    sets = {s: open_dataset(root, s, num_classes=4) for s in ("train", "val")}  # listing: outside the timing
    start = time.perf_counter()
    scan_splits(sets, log=lambda m: None, workers=workers)
    return time.perf_counter() - start


def run(pairs: int, workers: int | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="segkd-scan-bench-") as tmp:
        root = Path(tmp) / "data"
        start = time.perf_counter()
        build_tree(root, pairs)
        build = time.perf_counter() - start
        cold = scan(root, workers)
        cached = scan(root, workers)
        child = subprocess.run([sys.executable, "-c", CHILD, str(root)], capture_output=True, text=True, check=True,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        fresh = float(child.stdout.strip().splitlines()[-1])
    rows = [("cold (no cache)", cold), ("cached", cached), ("cached, new process", fresh)]
    return {
        "pairs": pairs, "image_size": [SIZE, SIZE], "workers": workers or min(8, os.cpu_count() or 1),
        "build_s": round(build, 2),
        "scans": [{"scan": name, "seconds": round(sec, 4), "pairs_per_s": round(pairs / sec)} for name, sec in rows],
        "cold_over_cached": round(cold / cached, 1),
        "machine": {"cpu": device_name(torch.device("cpu")), "cores": os.cpu_count(),
                    "python": platform.python_version(), "platform": platform.platform(), "device": "cpu",
                    "temp": tempfile.gettempdir()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the pre-training data scan, cold and cached.")
    parser.add_argument("--pairs", type=int, default=10_000, help="image/mask pairs to generate")
    parser.add_argument("--workers", type=int, default=None, help="scan threads (default: min(8, CPUs))")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args()
    result = run(args.pairs, args.workers)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    console = Console()
    table = Table(title=f"segkd data scan: {args.pairs:,} pairs ({SIZE}×{SIZE} PNG images + masks, train/val 4:1)")
    table.add_column("scan")
    table.add_column("seconds", justify="right")
    table.add_column("pairs/s", justify="right")
    for row in result["scans"]:
        table.add_row(row["scan"], f"{row['seconds']:.3f}", f"{row['pairs_per_s']:,}")
    console.print(table)
    m = result["machine"]
    console.print(f"cold / cached: {result['cold_over_cached']}× · {result['workers']} scan threads · device: "
                  f"{m['device']} ({m['cpu']}, {m['cores']} cores) · python {m['python']} · {m['platform']} · "
                  f"temp dir {m['temp']}", highlight=False)


if __name__ == "__main__":
    main()
