"""`segkd eval`: filled by a later issue."""

from segkd.errors import NotImplementedYet

NAME = "eval"
PANEL = "Train"


def main() -> None:
    """Not implemented yet.

    Example: [bold]segkd eval --help[/]
    """
    raise NotImplementedYet("'segkd eval' is not implemented yet")
