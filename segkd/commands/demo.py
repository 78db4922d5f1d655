"""`segkd demo`: the segkd story offline on synthetic navel-orange defect data, as a sequence of steps.

`run_demo` runs `STEPS` in order; each step is a plain function of the `DemoRun` that returns its summary
(a dict, shown as one table row and kept in `--json`). The data (generated, stratified split) and the demo's preset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import typer
from rich.table import Table

from segkd.commands.common import err, out, print_json
from segkd.data import open_dataset
from segkd.errors import DataError
from segkd.data.synthetic import CLASSES, generate_oranges


@dataclass
class DemoRun:
    """Where the demo writes and what each finished step reported."""

    out: Path
    images: int = 200
    size: int = 256
    seed: int = 0
    results: dict[str, dict] = field(default_factory=dict)

    @property
    def data_root(self) -> Path:
        return self.out / "oranges"


def step_data(run: DemoRun) -> dict:
    """Generate the orange-defect dataset under OUT/oranges with stratified 6:2:2 lists."""
    start = time.perf_counter()
    root = generate_oranges(run.data_root, run.images, (run.size, run.size), run.seed)
    splits = {s: len(open_dataset(root, s, num_classes=len(CLASSES))) for s in ("train", "val", "test")}
    return {"root": str(root), "images": run.images, "size": run.size, "classes": CLASSES, "splits": splits,
            "seconds": round(time.perf_counter() - start, 2)}


#: the demo's preset, written next to the data: the paper preset with a recipe for a short run from a random
#: backbone on 2 CPU cores (measured on the demo data: README "Quick start", benchmarks/first_run.sh)
RECIPE_FILE = "fastsegformer-p-demo.yaml"
RECIPE = """\
# written by segkd demo: FastSegFormer-P on the demo data, a short run from a random backbone on 2 CPU cores.
# Edit freely (segkd demo replaces this file only while this first line is unchanged).
base: fastsegformer-p
description: FastSegFormer-P, demo recipe (128 px, AdamW 2e-3 poly, hflip, CE + Dice)
data:
  input_size: 128                 # a third of 224's cost
  resize: resize                  # eval/predict: plain resize (the demo images are square)
  mean: [0.485, 0.456, 0.406]     # ImageNet mean/std instead of the reference's x/255
  std: [0.229, 0.224, 0.225]
train:
  epochs: 30
  batch_size: 8
  optimizer: adamw                # the paper's Adam 1e-4 is for a pretrained backbone; this one starts random
  lr: 2.0e-3
  min_lr: 2.0e-5
  weight_decay: 0.01
  scheduler: poly                 # linear decay per step, no warm-up, no min-lr tail
  power: 1.0
  sched_step: iter
  warmup_epochs: 0
  min_lr_epochs: 0
  freeze_epochs: 0
augment:                          # flips only, as measured (the paper's paste + HSV jitter: not tried alone)
  - {op: hflip, p: 0.5}
loss:                             # each defect covers 1-2 % of the pixels: CE alone stays at background
  - {name: ce, weight: 1.0}
  - {name: dice, weight: 1.0}
distill:                          # the teacher is a FastSegFormer-P checkpoint (teacher.weights=FILE)
  batch_size: 8
  normalize: true                 # each term divided by its starting value: the weight is relative importance
  terms:                          # P&KL on the logits; + 0.5 NFD on the fused map learnt slower (25 % val mIoU at
    - {loss: pkl, weight: 1.0, student: logits, teacher: logits, temperature: 2.0, k1: 0.5}   # epoch 14, 33 % without)
"""
TEACHER_EPOCHS = 40


def step_recipe(run: DemoRun) -> dict:
    """Write the demo preset OUT/fastsegformer-p-demo.yaml (refusing to replace a file the demo did not write)."""
    path = run.out / RECIPE_FILE
    first_line = RECIPE.split("\n", 1)[0]
    if path.exists() and (not path.is_file() or path.read_text(encoding="utf-8").split("\n", 1)[0] != first_line):
        raise DataError(f"{path}: exists and was not written by segkd demo; choose another output folder")
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(RECIPE, encoding="utf-8")
    partial.replace(path)
    return {"preset": str(path)}


STEPS: list[tuple[str, Callable[[DemoRun], dict]]] = [("data", step_data), ("recipe", step_recipe)]


def run_demo(out: Path | str, images: int = 200, size: int = 256, seed: int = 0) -> DemoRun:
    """Run every demo step in order; a step fails with a SegkdError naming its culprit."""
    run = DemoRun(Path(out), images, size, seed)
    for name, step in STEPS:
        run.results[name] = step(run)
    return run


def next_commands(run: DemoRun) -> list[str]:
    """The story on the demo data, each command as typed: teacher (the same model trained longer), student
    alone, distilled student, then the distilled student evaluated on the test split, exported to ONNX and
    benchmarked (bench with no target takes the most recent run's best.pt)."""
    preset, data, kd = run.out / RECIPE_FILE, run.data_root, "runs/distill/student-kd/weights/best.pt"
    teacher = "runs/train/teacher/weights/best.pt"
    return [
        f"segkd train --preset {preset} --data {data} name=teacher train.epochs={TEACHER_EPOCHS}",
        f"segkd train --preset {preset} --data {data} name=student",
        f"segkd distill --preset {preset} --data {data} name=student-kd teacher.weights={teacher}",
        f"segkd eval --weights {kd} --split test",
        f"segkd export --weights {kd}",
        "segkd bench --fp16",
    ]


def main(
    out_dir: Path = typer.Option(Path("demo"), "--out", help="Folder for everything the demo writes."),
    images: int = typer.Option(200, "--images", help="Number of synthetic images."),
    size: int = typer.Option(256, "--size", help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed writes byte-identical files."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of a table."),
) -> None:
    """Run the segkd demo offline: synthetic navel-orange defect data (sunburn, ulcer, wind scarring), split.

    Writes OUT/oranges (VOC layout, classes.txt, stratified 6:2:2 lists) and OUT/fastsegformer-p-demo.yaml (the
    paper preset with a recipe that learns in a short run on 2 CPU cores), and prints the commands of the whole
    story: train a teacher, train the student alone, distill it, evaluate, export and benchmark
    (benchmarks/first_run.sh runs them and prints each one's wall time and mIoU). An existing non-empty
    OUT/oranges, or an existing preset file, is replaced only if the demo wrote it.

    Example: [bold]segkd demo --out demo --images 200 --size 256[/]
    """
    run = run_demo(out_dir, images, size, seed)
    if as_json:
        print_json({"steps": run.results, "next": next_commands(run)})
        return
    data = run.results["data"]
    table = Table(title=f"segkd demo: {run.out}")
    for column in ("step", "result", "seconds"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    splits = " / ".join(f"{n} {s}" for s, n in data["splits"].items())
    table.add_row("data", f"{data['root']}: {data['images']} images {size}×{size}, {splits}", f"{data['seconds']:.1f}")
    table.add_row("recipe", f"{run.results['recipe']['preset']}: fastsegformer-p for a short run on a CPU", "")
    out.print(table)
    err.print("next:", soft_wrap=True)
    for command in next_commands(run):
        err.print(f"  {command}", markup=False, soft_wrap=True)
