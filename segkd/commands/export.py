"""`segkd export`: filled by a later issue."""

from segkd.errors import NotImplementedYet

NAME = "export"
PANEL = "Deploy"


def main() -> None:
    """Not implemented yet.

    Example: [bold]segkd export --help[/]
    """
    raise NotImplementedYet("'segkd export' is not implemented yet")
