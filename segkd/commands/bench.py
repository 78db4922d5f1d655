"""`segkd bench`: filled by a later issue."""

from segkd.errors import NotImplementedYet

NAME = "bench"
PANEL = "Deploy"


def main() -> None:
    """Not implemented yet.

    Example: [bold]segkd bench --help[/]
    """
    raise NotImplementedYet("'segkd bench' is not implemented yet")
