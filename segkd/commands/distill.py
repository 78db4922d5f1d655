"""`segkd distill`: filled by a later issue."""

from segkd.errors import NotImplementedYet

NAME = "distill"
PANEL = "Train"


def main() -> None:
    """Not implemented yet.

    Example: [bold]segkd distill --help[/]
    """
    raise NotImplementedYet("'segkd distill' is not implemented yet")
