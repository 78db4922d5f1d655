"""`segkd augment`: filled by a later issue."""

from segkd.errors import NotImplementedYet


def main() -> None:
    """Not implemented yet.

    Example: [bold]segkd augment --help[/]
    """
    raise NotImplementedYet("'segkd augment' is not implemented yet")
