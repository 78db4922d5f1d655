"""`segkd train`: filled by a later issue."""

from segkd.errors import NotImplementedYet

NAME = "train"
PANEL = "Train"


def main() -> None:
    """Not implemented yet.

    Example: [bold]segkd train --help[/]
    """
    raise NotImplementedYet("'segkd train' is not implemented yet")
