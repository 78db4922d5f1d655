"""The `segkd` command-line app: one thin module per subcommand in `segkd/commands/`.

Command modules are imported by name only when their command runs, so `segkd --help`, `segkd split` and
`segkd demo` start without importing what other commands need (torch, timm, onnx); a command module imports
torch only once its options and config are valid, so usage and config errors answer at once. `--help` lists each
command with the first line of its `main` docstring, read from the module's source without importing it.
An unknown option that names a config key (`--epochs 3`) is answered with the override to type (`train.epochs=3`).
Help paragraphs are reflowed, so the terminal wraps them rather than the docstring's line breaks.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
from typing import NamedTuple

import click
import typer
from typer.core import TyperCommand, TyperGroup

from segkd import __version__
from segkd.commands.common import State, run_guarded
from segkd.config import valid_keys


class CommandSpec(NamedTuple):
    module: str  # segkd.commands.<module>, which defines main()
    panel: str


COMMANDS = {
    "split": CommandSpec("split", "Data"),
    "augment": CommandSpec("augment", "Data"),
    "train": CommandSpec("train", "Train"),
    "distill": CommandSpec("distill", "Train"),
    "eval": CommandSpec("evaluate", "Train"),
    "predict": CommandSpec("predict", "Deploy"),
    "export": CommandSpec("export", "Deploy"),
    "bench": CommandSpec("bench", "Deploy"),
    "presets": CommandSpec("presets", "Config"),
    "demo": CommandSpec("demo", "Data"),
}


def command_summary(name: str) -> str:
    """The first line of the command's `main` docstring, parsed from its source file (not imported)."""
    spec = importlib.util.find_spec(f"segkd.commands.{COMMANDS[name].module}")
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return ""
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    main = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"), None)
    doc = ast.get_docstring(main) if main else None
    return doc.splitlines()[0] if doc else ""


def override_hint(option: str, args: list[str]) -> str | None:
    """`--epochs` in `[..., '--epochs', '3']` -> 'train.epochs=3': the config key an unknown option names."""
    name = option.lstrip("-").replace("-", "_")
    key = next((k for k in valid_keys() if k == name or k.endswith("." + name)), None)
    if key is None:
        return None
    value = "VALUE"
    for i, arg in enumerate(args):
        if arg.startswith(option + "="):
            value = arg.partition("=")[2]
        elif arg == option and i + 1 < len(args) and not args[i + 1].startswith("-"):
            value = args[i + 1]
    return f"{key}={value}"


class OverridesCommand(TyperCommand):
    """A command whose config keys are `key=value` arguments: an unknown `--key` says which override to type."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, list(args))
        except Exception as e:  # click's NoSuchOption, whichever click typer bundles
            takes_overrides = any(p.name == "overrides" for p in self.params)
            hint = override_hint(e.option_name, args) if type(e).__name__ == "NoSuchOption" and takes_overrides else None
            if hint is None:
                raise
            raise type(e)(e.option_name, f"No such option: {e.option_name}. Config keys are set as key=value "
                          f"after the options: {hint}", ctx=ctx) from None


def reflow(doc: str) -> str:
    """A docstring's paragraphs as single lines, so the terminal wraps them and not the source's line breaks."""
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in doc.split("\n\n"))


def load_command(name: str) -> click.Command:
    """The real command: its module imported now, wrapped in the error boundary."""
    spec = COMMANDS[name]
    module = importlib.import_module(f"segkd.commands.{spec.module}")
    single = typer.Typer(rich_markup_mode="rich", pretty_exceptions_enable=False, add_completion=False,
                         context_settings={"help_option_names": ["-h", "--help"]})
    single.command(name, cls=OverridesCommand, rich_help_panel=spec.panel, help=reflow(inspect.getdoc(module.main)),
                   context_settings={"allow_extra_args": False})(
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
        summary = command_summary(name)
        stub = click.Command(name, help=summary, short_help=summary)
        stub.rich_help_panel = spec.panel  # read by typer's help panels
        return stub

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, _, rest = super().resolve_command(ctx, args)
        return name, load_command(name), rest


app = typer.Typer(
    name="segkd",
    cls=LazyGroup,
    help="Real-time semantic segmentation with knowledge distillation.\n\n"
    "Example: [bold]segkd demo[/]  ·  [bold]segkd train --preset fastsegformer-p --data runs/demo/oranges[/]",
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
