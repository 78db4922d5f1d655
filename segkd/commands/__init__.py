"""One module per subcommand: each has NAME, PANEL and `main` (typer parses its signature)."""
