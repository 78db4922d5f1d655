"""OUT/demo-state.json: the demo's plan and the result of each finished step, rewritten atomically after each.

A rerun with the same OUT loads it, skips the finished steps (their results come from the file) and runs the
rest; a plan that differs (another --quick, --images or --seed) is refused unless --force starts over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from segkd.errors import DataError
from segkd.outputs import atomic_write, guard_outputs

VERSION = 1


@dataclass
class DemoState:
    path: Path
    plan: dict
    steps: dict[str, dict] = field(default_factory=dict)  # step -> its result, in the order they finished

    @classmethod
    def open(cls, path: Path, plan: dict, force: bool) -> "DemoState":
        """The state to continue from: a fresh one with `force` or when there is none, else the file's."""
        guard_outputs([path], force=True)  # a foreign demo-state.json is refused, the demo's own replaced
        if force or not path.is_file():
            return cls(path, plan)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            saved, steps = doc["plan"], doc["steps"]
            if doc.get("version") != VERSION or not isinstance(steps, dict):
                raise ValueError
        except (OSError, ValueError, KeyError, TypeError):
            raise DataError(f"{path}: unreadable demo state; pass --force to start over") from None
        if saved != plan:
            diff = ", ".join(f"{k}={saved.get(k)!r}" for k in plan if saved.get(k) != plan[k])
            raise DataError(f"{path.parent}: made by another demo plan ({diff}); pass --force to start over "
                            "or choose another --out")
        return cls(path, plan, steps)

    def done(self, step: str) -> bool:
        return step in self.steps

    def finish(self, step: str, result: dict) -> None:
        self.steps[step] = result
        self.save()

    def save(self) -> None:
        with atomic_write(self.path, "w", encoding="utf-8") as f:
            f.write(json.dumps({"version": VERSION, "plan": self.plan, "steps": self.steps}, indent=1) + "\n")
