"""Time `segkd augment` (the plain function `augment_dataset`): augmented pairs per second, by image size and
number of worker processes, and the milliseconds of each op of the recipe.

Builds a VOC tree per size in a temp folder (smooth random JPEG images, PNG masks of 4 classes, all pairs in
train.txt), then runs `augment_dataset(..., times=T)` with each worker count, side by side in one run. pairs/s
counts the augmented copies written (decode, ops, encode, write, the byte copies of the originals included);
the fork server's start-up (one per process, shared by later runs) is timed on its own and left out. The last
column scales the rate to the issue's goal: 1,448 pairs ×3 (4,344 copies) in under 2 minutes on 2 cores.

    python benchmarks/augment.py [--pairs 24] [--times 3] [--sizes 256x256,1024x2048] [--workers 1,2]
                                 [--recipe default] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from segkd.data.augment_offline import OfflinePipeline, augment_dataset, pair_rng
from segkd.data.augment_recipes import load_recipe
from segkd.data.io import write_mask

GOAL_COPIES = 1448 * 3


def build_voc(root: Path, pairs: int, hw: tuple[int, int]) -> None:
    """`pairs` smooth random images (upsampled noise: JPEG sizes like photos') with 4-class masks."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(pairs):
        image = sample_image(rng, hw)
        cv2.imwrite(str(root / "JPEGImages" / f"img_{i:04d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        write_mask(root / "SegmentationClass" / f"img_{i:04d}.png", (image[..., 0] // 64).astype(np.uint8))
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("".join(f"img_{i:04d}\n" for i in range(pairs)))


def sample_image(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    low = rng.integers(0, 256, (max(2, hw[0] // 64), max(2, hw[1] // 64), 3), dtype=np.uint8)
    image = cv2.resize(low, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)
    return np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)


def op_times(recipe: str, hw: tuple[int, int], calls: int = 5) -> dict[str, float]:
    """Milliseconds per call of each op (p forced to 1 where it has one), in this process."""
    pipe = OfflinePipeline(load_recipe(recipe))
    rng = np.random.default_rng(0)
    image = sample_image(rng, hw)
    mask = (image[..., 0] // 64).astype(np.uint8)
    times = {}
    for name, op in zip(pipe.names, pipe.ops):
        for transform in getattr(op, "_built", {}).values():  # albumentations-backed ops
            transform.p = 1.0
        if hasattr(op, "p"):  # segkd's own ops
            op.p = 1.0
        start = time.perf_counter()
        for k in range(calls):
            op(image, mask, pair_rng(0, name, k))
        times[name] = 1000 * (time.perf_counter() - start) / calls
    return times


def run(pairs: int, times: int, sizes: list[tuple[int, int]], workers: list[int], recipe: str) -> dict:
    rows, ops = [], {}
    with tempfile.TemporaryDirectory(prefix="segkd-augment-bench-") as tmp:
        start = time.perf_counter()
        warm = Path(tmp) / "warm"
        build_voc(warm, 2, (32, 32))
        augment_dataset(warm, Path(tmp) / "warm_out", times=1, workers=2, recipe=recipe)  # starts the fork server
        fork_server_s = time.perf_counter() - start
        for hw in sizes:
            data = Path(tmp) / f"data_{hw[0]}x{hw[1]}"
            build_voc(data, pairs, hw)
            ops[f"{hw[0]}x{hw[1]}"] = op_times(recipe, hw)
            for k in workers:
                report = augment_dataset(data, Path(tmp) / f"out_{hw[0]}x{hw[1]}_{k}", times=times, workers=k,
                                         recipe=recipe)
                rate = pairs * times / report.seconds
                rows.append({"size": f"{hw[0]}x{hw[1]}", "workers": k, "copies": pairs * times,
                             "seconds": round(report.seconds, 2), "pairs_per_s": round(rate, 1),
                             "goal_seconds": round(GOAL_COPIES / rate, 1)})
    return {"recipe": recipe, "pairs": pairs, "times": times, "rows": rows, "op_ms": ops,
            "fork_server_start_s": round(fork_server_s, 2),
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                        "python": platform.python_version(), "opencv": cv2.__version__, "device": "cpu"}}


def main() -> None:
    parser = argparse.ArgumentParser(description="Time segkd augment: augmented pairs per second.")
    parser.add_argument("--pairs", type=int, default=24, help="source pairs per size")
    parser.add_argument("--times", type=int, default=3, help="copies per pair")
    parser.add_argument("--sizes", default="256x256,1024x2048", help="HxW list")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    result = run(args.pairs, args.times, sizes, [int(w) for w in args.workers.split(",")], args.recipe)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    console = Console()
    table = Table(title=f"segkd augment: {args.pairs} pairs ×{args.times}, recipe {args.recipe}")
    for column in ("size (HxW)", "workers", "copies", "seconds", "pairs/s", "1448×3 would take (s)"):
        table.add_column(column, justify="right")
    for r in result["rows"]:
        table.add_row(r["size"], str(r["workers"]), str(r["copies"]), f"{r['seconds']:.2f}",
                      f"{r['pairs_per_s']:.1f}", f"{r['goal_seconds']:.0f}")
    console.print(table)
    ops = Table(title="ms per op call (p = 1, one process)")
    ops.add_column("op")
    for size in result["op_ms"]:
        ops.add_column(size, justify="right")
    for name in next(iter(result["op_ms"].values()), {}):
        ops.add_row(name, *(f"{result['op_ms'][s][name]:.1f}" for s in result["op_ms"]))
    console.print(ops)
    m = result["machine"]
    console.print(f"device: cpu ({m['cpu']}, {m['cores']} cores) · opencv {m['opencv']} · python {m['python']} · "
                  f"fork server start {result['fork_server_start_s']:.1f} s (not in the rates) · JPEG images, "
                  "PNG masks", highlight=False)


if __name__ == "__main__":
    main()
