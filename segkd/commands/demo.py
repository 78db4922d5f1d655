"""`segkd demo`: the segkd story offline on synthetic navel-orange defect data, as a sequence of steps.

`run_demo` runs `STEPS` in order; each step is a plain function of the `DemoRun` that returns its summary
(a dict, shown as one table row and kept in `--json`). Today: the data step (generate + stratified split).
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


STEPS: list[tuple[str, Callable[[DemoRun], dict]]] = [("data", step_data)]


def run_demo(out: Path | str, images: int = 200, size: int = 256, seed: int = 0) -> DemoRun:
    """Run every demo step in order; a step fails with a SegkdError naming its culprit."""
    run = DemoRun(Path(out), images, size, seed)
    for name, step in STEPS:
        run.results[name] = step(run)
    return run


#: the paper preset's recipe sized for the demo data on 2 CPU cores: 128 px (a third of 224's cost), Adam at 1e-3
#: (the paper's 1e-4 suits a pretrained backbone; this one starts random), batch 8, and Dice beside CE (each defect
#: class covers ~1-2 % of the pixels: with CE alone a short run predicts background only)
RECIPE = "data.input_size=128 train.batch_size=8 train.lr=1e-3 'loss=[{name: ce}, {name: dice}]'"
#: the student's KD terms for a FastSegFormer-P teacher (the preset's NFD pairs name Swin-T-Att-UNet taps):
#: NFD on the fused decoder map and P&KL on the logits, each normalised by its starting value
KD = ("distill.batch_size=8 distill.normalize=true 'distill.terms=[{loss: nfd, weight: 0.5, pairs: [[fusion, fusion]]}, "
      "{loss: pkl, weight: 1.0, student: logits, teacher: logits, temperature: 2.0, k1: 0.5}]'")
TEACHER_EPOCHS, STUDENT_EPOCHS = 30, 20


def next_commands(run: DemoRun) -> list[str]:
    """The story on the demo data, each command as typed: teacher, student alone, distilled student, then the
    distilled student evaluated on the test split, exported to ONNX and benchmarked (bench with no target takes
    the most recent run's best.pt)."""
    data, kd = run.data_root, "runs/distill/student-kd/weights/best.pt"
    return [
        f"segkd train --preset fastsegformer-p --data {data} name=teacher train.epochs={TEACHER_EPOCHS} {RECIPE}",
        f"segkd train --preset fastsegformer-p --data {data} name=student train.epochs={STUDENT_EPOCHS} {RECIPE}",
        f"segkd distill --preset fastsegformer-p --data {data} name=student-kd train.epochs={STUDENT_EPOCHS} "
        f"{RECIPE} teacher.weights=runs/train/teacher/weights/best.pt {KD}",
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

    Writes OUT/oranges (VOC layout, classes.txt, stratified 6:2:2 lists) and prints the commands of the whole
    story: train a teacher, train the student alone, distill it, evaluate, export and benchmark, with settings
    that learn on 2 CPU cores (benchmarks/first_run.sh runs them and prints each one's wall time and mIoU).
    An existing non-empty OUT/oranges is replaced only if the demo made it.

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
    out.print(table)
    err.print("next:", soft_wrap=True)
    for command in next_commands(run):
        err.print(f"  {command}", markup=False, soft_wrap=True)
