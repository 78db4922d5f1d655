"""Run folders: `runs/<command>/<name>/`, made unique by a counter (name, name2, name3, ...) unless exist_ok."""

from __future__ import annotations

from pathlib import Path

from segkd.outputs import make_dirs


def make_run_dir(project: str | Path, command: str, name: str, exist_ok: bool = False, create: bool = True) -> Path:
    """Create and return `project/command/name` (or the first free `nameN` when it exists and not exist_ok);
    `create=False` only says which folder it would be (for the output guard)."""
    base = Path(project) / command
    path = base / name
    n = 2
    while path.exists() and not exist_ok:
        path = base / f"{name}{n}"
        n += 1
    return make_dirs(path) if create else path
