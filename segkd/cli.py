"""The `segkd` command-line app: one thin module per subcommand in `segkd/commands/`.

Command modules are imported by name only when their command runs, so `segkd --help`, `segkd split` and
`segkd presets` start without importing what other commands need (torch, timm, onnx). The table below is the
only place that lists the commands; `--help` shows its one-line summaries (tests check them against each
command's docstring).
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import click
import typer
from typer.core import TyperGroup

from segkd import __version__
from segkd.commands.common import State, run_guarded


class CommandSpec(NamedTuple):
    module: str  # segkd.commands.<module>, which defines main()
    panel: str
    summary: str  # the first line of main's docstring


COMMANDS = {
    "split": CommandSpec("split", "Data", "Split a dataset into train/val/test lists by ratio: seeded, stable, "
                         "optionally stratified by class."),
    "augment": CommandSpec("augment", "Data", "Not implemented yet."),
    "train": CommandSpec("train", "Train", "Train a model from a preset; weights, results.csv and plots go to "
                         "runs/train/<name>/."),
    "distill": CommandSpec("distill", "Train", "Distill a teacher into a student: hard labels + the preset's "
                           "weighted KD terms, one column each."),
    "eval": CommandSpec("evaluate", "Train", "Evaluate a checkpoint: per-class IoU / Acc / Precision / Dice, "
                        "confusion matrix and plots."),
    "predict": CommandSpec("predict", "Deploy", "Segment images, folders, globs and videos; write label PNGs and "
                           "pictures (exit 1 if an input failed)."),
    "export": CommandSpec("export", "Deploy", "Export the model alone to ONNX and verify every file with ONNX "
                          "Runtime against PyTorch."),
    "bench": CommandSpec("bench", "Deploy", "Benchmark models: one row per model × backend, protocol in the header, "
                         "CSV/JSON under runs/bench/."),
    "presets": CommandSpec("presets", "Config", "List presets (name, model family, params, input size, paper), or "
                           "show one fully resolved."),
    "demo": CommandSpec("demo", "Config", "Run the segkd demo offline: synthetic navel-orange defect data "
                        "(sunburn, ulcer, wind scarring), split."),
}


def load_command(name: str) -> click.Command:
    """The real command: its module imported now, wrapped in the error boundary."""
    spec = COMMANDS[name]
    module = importlib.import_module(f"segkd.commands.{spec.module}")
    single = typer.Typer(rich_markup_mode="rich", pretty_exceptions_enable=False, add_completion=False,
                         context_settings={"help_option_names": ["-h", "--help"]})
    single.command(name, rich_help_panel=spec.panel, context_settings={"allow_extra_args": False})(
        run_guarded(module.main))
    return typer.main.get_command(single)


class LazyGroup(TyperGroup):
    """Lists commands from `COMMANDS` and imports one only to run it (or to show its own --help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        spec = COMMANDS.get(name)
        if spec is None:
            return None
        stub = click.Command(name, help=spec.summary, short_help=spec.summary)
        stub.rich_help_panel = spec.panel  # read by typer's help panels
        return stub

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, _, rest = super().resolve_command(ctx, args)
        return name, load_command(name), rest


app = typer.Typer(
    name="segkd",
    cls=LazyGroup,
    help="Real-time semantic segmentation with knowledge distillation.\n\n"
    "Example: [bold]segkd demo --out demo[/]  ·  [bold]segkd train --preset fastsegformer-p --data demo/oranges[/]",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"segkd {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    State.debug = State.debug or debug
