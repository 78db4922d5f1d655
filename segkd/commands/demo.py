"""`segkd demo`: the whole segkd story offline on synthetic navel-orange defect data, ending in a report.

The steps live in `segkd.demo` (each calls the function its own command runs); this module parses the options
and prints the final table.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from segkd import demo, report
from segkd.commands.common import err, out, print_json, progress_enabled
from segkd.errors import ConfigError


def main(
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for everything the demo writes."),
    quick: bool = typer.Option(False, "--quick", help="A tiny run (10 images at 64 px, 1 epoch each): the pipeline "
                               "in about a minute, not a model worth keeping."),
    images: int = typer.Option(None, "--images", help="Number of synthetic images (default 200; --quick 10).",
                               show_default=False),
    seed: int = typer.Option(0, "--seed", help="Seed of the data and the runs: the same seed writes the same data."),
    force: bool = typer.Option(False, "--force", help="Start over: redo every step, replacing the demo's own files "
                               "(never files it did not write)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (plan, steps, table) instead of "
                                 "the table."),
) -> None:
    """Run the whole segkd story offline (data, teacher, student, distill, eval, export, bench) with a report.

    Generates synthetic navel-orange defect data (sunburn, ulcer, wind scarring) with a 6:2:2 split, trains a
    SegFormer-B1 teacher at 160 px and the FastSegFormer-P student alone at 128 px side by side (one process and
    one thread each), distills the student (P&KL + NFD, the teacher at its larger size), evaluates the three on the
    test split, exports the distilled student to ONNX fp32 and int8, benchmarks them on the CPU, draws test
    overlays, and writes OUT/report.html and OUT/report.md.
    Each step prints the `segkd` command that does the same on your data.

    Resumable: OUT/demo-state.json records the finished steps; running again with the same --out continues at
    the first unfinished step. --force starts over.

    Example: [bold]segkd demo --out runs/demo[/]   (sized for about 10 minutes on 2 CPU cores)
    """
    if images is not None and images < 5:
        raise ConfigError(f"--images {images}: at least 5 (the 6:2:2 split needs an image in each part)")
    state = demo.runner.run_demo(out_dir, quick, images, seed, force, console=err, live=progress_enabled())
    result = state.steps["report"]
    keeping = demo.plan.keeping_commands(demo.plan.DemoPaths(out_dir))
    if as_json:
        print_json({"plan": state.plan, "steps": state.steps, "table": result["table"], "kd_gain": result["kd_gain"],
                    "keeping": keeping})
        return
    out.print(result_table(result["table"]))
    out.print(f"distilled student vs student alone: {result['kd_gain']:+.2f} test mIoU points")
    out.print(f"report: {result['html']} · {result['md']}")
    out.print("a student worth keeping (longer runs, about an hour on 2 CPU cores; README \"A student worth keeping\"):")
    for line in keeping:
        out.print(f"  {line}", soft_wrap=True, markup=False)


def result_table(rows: list[dict]) -> Table:
    columns = report.table.COLUMNS
    table = Table(title="segkd demo: test split, CPU batch 1")
    for key, header, _ in columns:
        table.add_column(header, justify="left" if key in ("model", "input") else "right")
    for row in rows:
        table.add_row(*(report.table.cell(row, key, fmt) for key, _, fmt in columns))
    return table
