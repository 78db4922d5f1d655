"""`segkd demo`: filled by a later issue."""

from segkd.errors import NotImplementedYet

NAME = "demo"
PANEL = "Data"


def main() -> None:
    """Not implemented yet.

    Example: [bold]segkd demo --help[/]
    """
    raise NotImplementedYet("'segkd demo' is not implemented yet")
