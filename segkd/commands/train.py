"""`segkd train`: train a preset's model on a dataset folder; runs/train/<name>/ holds weights, results, plots.

The engine (torch) is imported once the config is valid, so usage and config errors answer at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.table import Table

from segkd import engine
from segkd.commands.common import OVERRIDES_HELP, err, out, print_json, progress_enabled, start_run
from segkd.config import Config, load_config, parse_overrides
from segkd.errors import ConfigError

if TYPE_CHECKING:
    from segkd.engine.trainer import Trainer


def run_config(preset: Optional[str], data: Optional[str], overrides: list[str] | None,
               notes: list[str] | None = None) -> Config:
    """The config a train/distill command runs: a preset + --data + overrides, or a last.pt to resume."""
    parsed = parse_overrides(overrides or [])
    if data is not None:
        parsed["data.root"] = data
    resume = parsed.get("resume")
    if resume:
        if preset is not None:
            raise ConfigError("resume=FILE continues the run saved in FILE: drop --preset")
        return engine.checkpointing.resume_config(resume, parsed)  # torch: reads last.pt
    if preset is None:
        raise ConfigError("--preset NAME is required (see `segkd presets`), or resume=runs/train/<name>/weights/last.pt")
    return load_config(preset, parsed, notes)


def show_validation(trainer: Trainer) -> None:
    """on_fit_epoch_end: the per-class table after each validation (stderr)."""
    if trainer.metrics is not None:
        title = f"val, epoch {trainer.epoch + 1}/{trainer.cfg.train.epochs}"
        err.print(engine.eval_report.metrics_table(trainer.metrics, title=title))


def run_command(trainer: Trainer, as_json: bool) -> dict[str, Any]:
    """Attach the console callbacks, train, print the summary (a table, or one JSON document)."""
    trainer.add_callback("on_fit_epoch_end", show_validation)
    summary = trainer.train()
    if as_json:
        print_json(summary)
        return summary
    table = Table(title=f"segkd {trainer.command}: {summary['save_dir']}")
    table.add_column("item")
    table.add_column("value")
    best = summary["best_miou"]
    table.add_row("best mIoU", f"{100 * best:.2f}% (epoch {summary['best_epoch']})" if best is not None else "-")
    for key in ("best", "last", "results"):
        table.add_row(key, str(summary[key]))
    table.add_row("time", f"{summary['time_s']:.1f}s on {summary['device']} ({summary['precision']})")
    out.print(table)
    return summary


def main(
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Preset name or YAML file (`segkd presets`)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset folder (sets data.root)."),
    as_json: bool = typer.Option(False, "--json", help="Print the final summary as one JSON document."),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Train a model from a preset; weights, results.csv and plots go to runs/train/<name>/.

    Setting train.epochs scales the preset's warm-up, min-lr tail and backbone freeze to the run (3 warm-up
    epochs of 1000 become 0.06 of 20); the plan line shows them. A backbone is frozen only when it was loaded
    (model.backbone_weights or model.weights). [bold]train.time=H[/] trains for H hours of wall time instead: the
    epoch count and schedule are re-estimated after each epoch, and a resumed run keeps the rest. The class count, names and palette come from the data's
    classes.txt unless given as overrides. Resume an interrupted run with
    [bold]resume=runs/train/<name>/weights/last.pt[/] (its saved config is used).

    Several GPUs: [bold]train.devices=0,1[/] (or [bold]=N[/]) relaunches under torchrun, or start it yourself with
    [bold]torchrun --nproc-per-node 2 -m segkd train ...[/]. [bold]train.batch_size is per GPU[/] (per process):
    the global batch is batch_size × processes.

    Example: [bold]segkd train --preset fastsegformer-p --data demo/oranges train.epochs=50[/]
    """
    notes: list[str] = []
    cfg = run_config(preset, data, overrides, notes)
    start_run(cfg, notes, set(parse_overrides(overrides or [])))
    run_command(engine.trainer.Trainer(cfg, "train", progress=progress_enabled(), console=err), as_json)
