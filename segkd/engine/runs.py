"""Run folders: `runs/<command>/<name>/`, made unique by a counter (name, name2, name3, ...) unless exist_ok.

`eval` and `predict` name their folder after the weights (`weights_run_name`) and reuse it (exist_ok): running
them again on the same weights refreshes runs/eval/<run>/ instead of piling up <run>2, <run>3, ...
"""

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


def latest_weights(project: str | Path = "runs", filename: str = "best.pt") -> Path | None:
    """The most recently written `project/<command>/<name>/weights/<filename>`, or None when there is none."""
    found = sorted(Path(project).glob(f"*/*/weights/{filename}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def weights_run_name(weights: str | Path) -> str | None:
    """runs/train/x/weights/best.pt -> 'x' (last.pt -> 'x-last'); None for a file outside a run's weights/."""
    path = Path(weights)
    if path.parent.name != "weights" or not path.parent.parent.name:
        return None
    run = path.parent.parent.name
    return run if path.stem == "best" else f"{run}-{path.stem}"
