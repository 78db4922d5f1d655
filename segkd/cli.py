"""The `segkd` command-line app: one thin module per subcommand in `segkd/commands/`."""

from __future__ import annotations

import typer

from segkd import __version__
from segkd.commands import augment, bench, demo, distill, evaluate, export, predict, presets, split, train
from segkd.commands.common import State, run_guarded

app = typer.Typer(
    name="segkd",
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


for cmd in (split, augment, train, distill, evaluate, predict, export, bench, presets, demo):
    app.command(
        cmd.NAME,
        rich_help_panel=cmd.PANEL,
        context_settings={"allow_extra_args": False},
    )(run_guarded(cmd.main))
