"""`python -m segkd` runs the CLI."""

from segkd.cli import app

app(prog_name="segkd")
