"""`segkd split`: filled by a later issue."""

from segkd.errors import NotImplementedYet

NAME = "split"
PANEL = "Data"


def main() -> None:
    """Not implemented yet.

    Example: [bold]segkd split --help[/]
    """
    raise NotImplementedYet("'segkd split' is not implemented yet")
