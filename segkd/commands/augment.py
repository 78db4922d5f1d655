"""`segkd augment`: offline augmentation of one split into a new dataset (val/test copied byte for byte)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import track
from rich.table import Table

from segkd.commands.common import err, out, print_json, progress_enabled
from segkd.data.augment_offline import PARTIAL_EXIT, augment_dataset
from segkd.data.augment_recipes import recipe_names
from segkd.data.augment_report import AugmentReport

SHOWN_SKIPS = 10


def main(
    data: Path = typer.Argument(..., help="Dataset folder (VOC, plain or Cityscapes layout) with split lists.",
                                show_default=False),
    out_dir: Path = typer.Option(..., "--out", help="New dataset folder (outside DATA).", show_default=False),
    times: int = typer.Option(1, "--times", help="Augmented copies per image of the split (N >= 1)."),
    recipe: str = typer.Option("default", "--recipe",
                               help=f"{' | '.join(recipe_names())} | FILE.yaml (an op list, like a preset's "
                                    "augment:, or an albumentations A.to_dict pipeline)."),
    split: str = typer.Option("train", "--split", help="The split to augment; every other split is copied as is."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives byte-identical files."),
    workers: int = typer.Option(0, "--workers", help="Processes (0: one per CPU core, fewer for small jobs). Never changes the output."),
    preview: bool = typer.Option(False, "--preview", help="Also write augment_preview.png: originals beside their "
                                 "copies, masks overlaid."),
    force: bool = typer.Option(False, "--force", help="Replace an --out folder that segkd augment wrote before."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of the tables."),
) -> None:
    """Augment the train split offline into a new dataset, so no copy of a val/test image can leak into train.

    Writes a complete dataset at --out in DATA's layout: the split's pairs, N augmented copies of each
    ([bold]<stem>_aug<k>[/], same size as the source), the other splits copied byte for byte, classes.txt, and
    split lists in which every copy sits in its source's lists (train, trainval). Recipes use the ops of a
    preset's augment: list (one op library for training and for this command). Copy k of a stem depends only
    on the seed, the stem and k, so any --workers gives the same bytes. A corrupt image or mask is named and
    skipped; the rest is written and the exit code is 3. Refused with exit 2 and nothing written: --out inside
    DATA, a non-empty --out without --force (which only replaces a folder segkd augment wrote), an unknown
    op or parameter, N < 1, a dataset without split lists. DATA is never written to.

    Example: [bold]segkd augment data/oranges --out data/oranges_x4 --times 3 --recipe fastsegformer --preview[/]
    """
    steps = None if as_json or not progress_enabled() else _progress
    report = augment_dataset(data, out_dir, times=times, recipe=recipe, split=split, seed=seed,
                             workers=workers or None, preview=preview, force=force, progress=steps)
    if as_json:
        print_json(report.to_dict())
    else:
        out.print(images_table(report))
        out.print(shares_table(report))
        err.print(f"wrote {escape(str(report.out))} in {report.seconds:.1f} s ({report.workers} workers)"
                  + (f"; preview {escape(str(report.preview))}" if report.preview else ""), soft_wrap=True)
    if report.skipped:
        for line in report.skipped[:SHOWN_SKIPS]:
            err.print(f"[yellow]skipped:[/] {escape(line)}", soft_wrap=True)
        more = len(report.skipped) - SHOWN_SKIPS
        err.print(f"[yellow]warning:[/] {len(report.skipped)} pair(s) skipped" + (f" ({more} not shown)" if more > 0
                                                                                   else ""), soft_wrap=True)
        raise typer.Exit(code=PARTIAL_EXIT)


def images_table(report: AugmentReport) -> Table:
    table = Table(title=f"{report.source} -> {report.out} ({report.format}): {report.split} ×{report.times} "
                        f"copies, recipe {report.recipe}, seed {report.seed}")
    for column in ("split", "images before", "images after"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, (before, after) in report.images.items():
        table.add_row(split, str(before), str(after))
    return table


def shares_table(report: AugmentReport) -> Table:
    table = Table(title=f"class pixel shares in {report.split} (ignore index left out)")
    for column in ("class", "before", "after"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, b, a in zip(report.classes, report.shares(report.pixels_before), report.shares(report.pixels_after)):
        table.add_row(name, f"{100 * b:.2f}%", f"{100 * a:.2f}%")
    return table


def _progress(items, total):
    return track(items, total=total, description="augmenting", console=err, transient=True)
