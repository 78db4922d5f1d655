"""`segkd distill`: train a student with the one trainer plus a frozen teacher and the preset's KD terms.

The engine (torch) is imported once the config is valid, so usage and config errors answer at once.
"""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table

from segkd import engine
from segkd.commands.common import OVERRIDES_HELP, err, out, print_json, progress_enabled, start_run
from segkd.config import Config, load_config, parse_overrides, size_hw
from segkd.errors import ConfigError


#: short override prefixes accepted for the teacher: teacher.weights=FILE == distill.teacher.weights=FILE
ALIASES = {"teacher.": "distill.teacher."}


def expand_aliases(overrides: dict[str, Any]) -> dict[str, Any]:
    """`teacher.X=...` -> `distill.teacher.X=...`; giving both spellings of one key is an error."""
    out_: dict[str, Any] = {}
    for key, value in overrides.items():
        full = next((long + key[len(short):] for short, long in ALIASES.items() if key.startswith(short)), key)
        if full in out_:
            raise ConfigError(f"'{key}' and '{full}' set the same key: give one")
        out_[full] = value
    return out_


def distill_config(preset: str | None, data: str | None, overrides: list[str] | None,
                   notes: list[str] | None = None) -> Config:
    """The run's config: the preset + overrides, or (with resume=last.pt) the config saved in that run."""
    parsed = expand_aliases(parse_overrides(overrides or []))
    if data is not None:
        parsed["data.root"] = data
    if parsed.get("resume"):
        cfg = engine.checkpointing.resume_config(parsed.pop("resume"), parsed)  # torch: reads last.pt
    elif preset is None:
        raise ConfigError("segkd distill needs --preset NAME (a preset with a distill block), or resume=last.pt")
    else:
        cfg = load_config(preset, parsed, notes)
    if cfg.distill is None:
        raise ConfigError(
            f"preset '{cfg.preset}' has no distill block (teacher + terms): pick one marked KD in `segkd presets`"
        )
    return cfg


def main(
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="A preset with a [bold]distill[/] block."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset folder (same as data.root=DIR)."),
    random_teacher: bool = typer.Option(
        False, "--random-teacher", help="Run with an untrained teacher when no weights are given (smoke tests only)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as one JSON document."),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Distill a teacher into a student: hard labels + the preset's weighted KD terms, one column each.

    The teacher is [bold]distill.teacher[/]: a segkd checkpoint of any family (it rebuilds itself and sees the
    images at the size it was trained at, unless distill.teacher.input_size is set; it wins over the preset's
    teacher), or foreign weights with distill.teacher.arch=MODEL or .preset=NAME. A feature term with
    [bold]pairs: auto[/] pairs each student tap with the teacher tap of the same stride (printed below).
    [bold]teacher.weights=FILE[/] is short for distill.teacher.weights=FILE. distill.normalize=true divides each
    KD term by its starting value; the first step prints each term against the hard-label loss. Checkpoints hold
    the student only, so eval/predict/export take best.pt as they take a trained one.

    Several GPUs: [bold]train.devices=0,1[/] (or [bold]=N[/]), or
    [bold]torchrun --nproc-per-node 2 -m segkd distill ...[/]; the batch size is per GPU (per process), the teacher
    is replicated on each.

    Example: [bold]segkd distill --preset fastsegformer-p-kd2 --data demo/oranges teacher.weights=runs/train/swin-t-att-unet/weights/best.pt[/]
    """
    notes: list[str] = []
    cfg = distill_config(preset, data, overrides, notes)
    given = set(expand_aliases(parse_overrides(overrides or [])))  # keys set on the command line
    start_run(cfg, notes, given)
    from_checkpoint = cfg.resume is None and "distill.teacher.input_size" not in given
    distiller = engine.distill.Distiller.from_config(cfg, allow_random_teacher=random_teacher,
                                                     teacher_size_from_checkpoint=from_checkpoint)
    if cfg.distill.teacher.weights is None:
        err.print("[yellow]warning:[/] the teacher is untrained (--random-teacher): this run only tests the pipeline")
    if distiller.teacher_spec.note:
        err.print(f"note: {distiller.teacher_spec.note}", markup=False, soft_wrap=True)
    (th, tw), (sh, sw) = distiller.teacher_size, distiller.student_size
    err.print(f"teacher {distiller.teacher_arch} at {th}×{tw} ({distiller.teacher_spec.source}), "
              f"student {cfg.model.arch} at {sh}×{sw}", markup=False, soft_wrap=True)
    for line in distiller.describe():
        err.print(f"  {line}", markup=False, soft_wrap=True)
    summary = engine.trainer.train(cfg, distiller=distiller, progress=progress_enabled(), console=err,
                    callbacks=distiller.callbacks())
    summary["teacher"] = {"arch": distiller.teacher_arch, "weights": distiller.teacher_spec.source,
                          "input_size": list(distiller.teacher_size), "val": distiller.teacher_metrics}
    summary["kd_terms"] = distiller.term_names
    if as_json:
        print_json(summary)
        return
    out.print(result_table(cfg, summary))
    if summary.get("best"):
        out.print(f"best: {summary['best']}")


def result_table(cfg: Config, summary: dict) -> Table:
    """Teacher and distilled student side by side (val mIoU, in %)."""
    table = Table(title=f"segkd distill {cfg.name}")
    for col in ("model", "role", "input", "val mIoU"):
        table.add_column(col, justify="right" if col == "val mIoU" else "left")
    teacher = summary["teacher"]
    t_miou = (teacher["val"] or {}).get("mIoU")
    h, w = teacher["input_size"]
    table.add_row(teacher["arch"], "teacher", f"{h}×{w}", _pct(t_miou))
    sh, sw = size_hw(cfg.data.input_size)
    table.add_row(cfg.model.arch, f"student (best, epoch {summary.get('best_epoch')})", f"{sh}×{sw}",
                  _pct(summary.get("best_miou")))
    return table


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"
