"""Time `segkd split` on a generated tree of empty-but-valid files (100k pairs by default).

Builds JPEGImages/*.jpg + SegmentationClass/*.png zero-byte files in a temp folder (VOC layout; `--layout
plain` for images/ + masks/), then times: the plain function `split_dataset` (first run, writing the lists),
a second run with force (backing the lists up), and the CLI `segkd split --force` in a fresh process
(Python start-up and imports included). Without --stratify no file is opened, so zero-byte files are enough.

    python benchmarks/split.py [--pairs 100000] [--layout voc|plain] [--json]
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

import numpy as np
from rich.console import Console
import torch
from rich.table import Table

from segkd.data.split import PIXEL_SHARE_LIMIT, split_dataset
from segkd.deploy.bench_report import device_name

FOLDERS = {"voc": ("JPEGImages", "SegmentationClass"), "plain": ("images", "masks")}


def build_tree(root: Path, pairs: int, layout: str) -> None:
    image_dir, mask_dir = (root / f for f in FOLDERS[layout])
    image_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    for i in np.random.default_rng(0).permutation(pairs):  # creation order != sorted order
        (image_dir / f"img_{i:06d}.jpg").touch()
        (mask_dir / f"img_{i:06d}.png").touch()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(pairs: int, layout: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="segkd-split-bench-") as tmp:
        root = Path(tmp) / "data"
        rows = [("build tree (2 files per pair)", timed(lambda: build_tree(root, pairs, layout)))]
        rows.append(("split_dataset 6:2:2", timed(lambda: split_dataset(root, "6:2:2", seed=0))))
        rows.append(("split_dataset 6:2:2 --force", timed(lambda: split_dataset(root, "6:2:2", seed=1, force=True))))
        cli = [sys.executable, "-m", "segkd", "split", str(root), "--force", "--json"]
        rows.append(("CLI segkd split --force (new process)", timed(lambda: subprocess.run(cli, check=True,
                                                                                           capture_output=True))))
    return {
        "pairs": pairs, "layout": layout,
        "steps": [{"step": name, "seconds": round(sec, 3), "pairs_per_s": round(pairs / sec)} for name, sec in rows],
        "machine": {"cpu": device_name(torch.device("cpu")), "cores": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "device": "cpu", "temp": tempfile.gettempdir()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Time segkd split on a generated tree of empty files.")
    parser.add_argument("--pairs", type=int, default=100_000, help="image/mask pairs to generate")
    parser.add_argument("--layout", choices=sorted(FOLDERS), default="voc")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args()
    if args.pairs <= PIXEL_SHARE_LIMIT:  # below it, split reads masks for pixel shares: zero-byte files would fail
        parser.error(f"--pairs must be above {PIXEL_SHARE_LIMIT} (smaller datasets get their masks read)")
    result = run(args.pairs, args.layout)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    console = Console()
    table = Table(title=f"segkd split: {args.pairs:,} pairs ({args.layout} layout, zero-byte files, no mask reads)")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("pairs/s", justify="right")
    for row in result["steps"]:
        table.add_row(row["step"], f"{row['seconds']:.2f}", f"{row['pairs_per_s']:,}")
    console.print(table)
    m = result["machine"]
    console.print(f"device: {m['device']} ({m['cpu']}, {m['cores']} cores) · python {m['python']} · "
                  f"{m['platform']} · temp dir {m['temp']}", highlight=False)


if __name__ == "__main__":
    main()
