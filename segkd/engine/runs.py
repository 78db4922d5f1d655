"""Run folders: `runs/<command>/<name>/`, made unique by a counter (name, name2, name3, ...) unless exist_ok."""

from __future__ import annotations

from pathlib import Path


def make_run_dir(project: str | Path, command: str, name: str, exist_ok: bool = False) -> Path:
    """Create and return `project/command/name` (or the first free `nameN` when it exists and not exist_ok)."""
    base = Path(project) / command
    path = base / name
    n = 2
    while path.exists() and not exist_ok:
        path = base / f"{name}{n}"
        n += 1
    path.mkdir(parents=True, exist_ok=True)
    return path
