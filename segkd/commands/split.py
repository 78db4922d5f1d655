"""`segkd split`: write train/val/test split lists for a VOC or plain dataset."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import track
from rich.table import Table

from segkd.commands.common import err, out, print_json, progress_enabled
from segkd.data.split import SplitReport, split_dataset

SHOWN_ORPHANS = 10


def main(
    data: Path = typer.Argument(..., help="Dataset folder (VOC or plain layout).", show_default=False),
    ratio: str = typer.Option("6:2:2", "--ratio", help="train:val:test (e.g. 8:1:1, 0.6:0.2:0.2) or train:val (7:3)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the shuffle."),
    stratify: bool = typer.Option(False, "--stratify", help="Read the masks and spread every class over the splits "
                                  "in proportion (iterative stratification; for rare defect classes)."),
    force: bool = typer.Option(False, "--force", help="Replace existing lists; the old ones are kept as *.txt.bak."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of a table."),
) -> None:
    """Split a dataset into train/val/test lists by ratio: seeded, stable, optionally stratified by class.

    Every image with a same-stem mask is split; unpaired files are reported and left out. Stems are sorted
    first, so the lists depend only on the seed and the ratio. Counts follow the ratio by [bold]largest
    remainder[/]: each split gets floor(n × share), the rest go one each to the largest remainders, ties to
    the earlier split (1448 at 6:2:2 -> 869/290/289). Lists: ImageSets/Segmentation/ (VOC) or splits/ (plain),
    with trainval.txt. Without --stratify no file is opened, except to show per-class pixel shares for
    datasets of at most 2000 pairs. No image or mask is ever moved, renamed or deleted.

    Example: [bold]segkd split data/oranges --ratio 6:2:2 --seed 0 --stratify[/]
    """
    steps = None if as_json or not progress_enabled() else _progress
    report = split_dataset(data, ratio, seed=seed, stratify=stratify, force=force, progress=steps)
    if as_json:
        print_json(report.to_dict())
        return
    out.print(split_table(report))
    _print_notes(report)


def split_table(report: SplitReport) -> Table:
    """One row per split: images, share of images, and per class its pixel share (images containing it)."""
    how = "stratified" if report.stratify else "random"
    table = Table(title=f"{report.root} ({report.format}): {report.ratio}, seed {report.seed}, {how}",
                  caption="class cells: % of labelled pixels (images containing the class)" if report.pixels else None)
    table.add_column("split")
    table.add_column("images", justify="right")
    table.add_column("share", justify="right")
    columns = report.classes if report.pixels else ["pixel shares"]
    for column in columns:
        table.add_column(column, justify="right")
    for split, stems in report.lists.items():
        shares = report.pixel_shares(split)
        cells = [f"{100 * s:.2f} ({n})" for s, n in zip(shares, report.images_with[split])] if shares else ["-"]
        table.add_row(split, str(len(stems)), f"{100 * len(stems) / report.pairs:.1f}%", *cells)
    return table


def _print_notes(report: SplitReport) -> None:
    if report.stats_note:
        err.print(f"note: {report.stats_note}", markup=False, soft_wrap=True)
    for split, missing in report.absent().items():
        if missing:
            _warn(f"no {', '.join(missing)} pixels in {split}")
    for what, names in (("images without masks", report.images_only), ("masks without images", report.masks_only)):
        if names:
            shown = ", ".join(names[:SHOWN_ORPHANS]) + (", ..." if len(names) > SHOWN_ORPHANS else "")
            _warn(f"{len(names)} {what} left out: {shown}")
    if report.written:
        kept = " (old lists kept as *.txt.bak)" if report.backups else ""
        names = ", ".join(p.name for p in report.written)
        err.print(f"wrote {names} in {report.written[0].parent}{kept}", markup=False, soft_wrap=True)


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def _progress(items, total):
    return track(items, total=total, description="reading masks", console=err, transient=True)
