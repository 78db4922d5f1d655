"""`segkd predict`: filled by a later issue."""

from segkd.errors import NotImplementedYet

NAME = "predict"
PANEL = "Deploy"


def main() -> None:
    """Not implemented yet.

    Example: [bold]segkd predict --help[/]
    """
    raise NotImplementedYet("'segkd predict' is not implemented yet")
