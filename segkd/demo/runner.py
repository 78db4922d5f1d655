"""Run the demo's steps in order, skipping those the state file records as finished, with a progress display.

On a terminal a rich display shows each step, its epoch and the ETA; off a terminal (or with `CI` set) it
prints one line when a step starts (with the equivalent `segkd` command) and one when it ends.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from segkd.deploy.backends import torch_threads
from segkd.demo.plan import DemoPaths, commands, make_plan
from segkd.demo.state import DemoState
from segkd.demo.side_by_side import run_side_by_side
from segkd.demo.steps import SIDE_BY_SIDE, STEPS, DemoContext
from segkd.outputs import guard_outputs, make_dirs
from segkd.report.document import report_outputs

UNITS = {"teacher": "epoch", "student": "epoch", "distill": "epoch", "eval": "model"}


def run_demo(out: str | Path, quick: bool = False, images: int | None = None, seed: int = 0, force: bool = False,
             console: Console | None = None, live: bool = False) -> DemoState:
    """Every step not yet finished in OUT, in order; returns the state (each step's result). `live`: the rich
    progress display on `console`, else one line per step."""
    plan = make_plan(quick, images, seed)
    paths = DemoPaths(Path(out))
    make_dirs(paths.out)
    guard_outputs([*paths.top_level(), *report_outputs(paths.out)], force=True)  # before any work: no foreign file
    state = DemoState.open(paths.state, plan.key(), force)
    console = console or Console(stderr=True, quiet=True)
    lines = commands(plan, paths)
    titles = {name: f"[{i}/{len(STEPS)}] {name}" for i, (name, _) in enumerate(STEPS, 1)}
    with torch_threads(plan.threads), _display(console, live) as bar:
        shown = _StepLines(console, bar, titles, lines)
        earlier = set(state.steps)
        for name, step in STEPS:
            if name in earlier:
                console.print(f"{titles[name]}: done earlier ({paths.state.name}), skipped", markup=False)
                continue
            if state.done(name):  # ran side by side with an earlier step
                continue
            group = [n for n in SIDE_BY_SIDE if not state.done(n)] if name in SIDE_BY_SIDE else [name]
            if plan.side_by_side and len(group) > 1:
                console.print(f"{' and '.join(group)} run side by side, one process and one thread each",
                              markup=False)
                for n in group:
                    shown.start(n)
                run_side_by_side(group, plan, paths, state.steps, lambda n, kind, payload: shown.event(
                    n, kind, payload, on_done=state.finish))
                continue
            shown.start(name)
            ctx = DemoContext(plan, paths, state.steps, lambda d, t, n=name: shown.event(n, "epoch", (d, t)),
                              lambda m, n=name: shown.event(n, "log", m))
            start = time.perf_counter()
            result = step(ctx) | {"seconds": round(time.perf_counter() - start, 1)}
            shown.event(name, "done", result, on_done=state.finish)
    return state


class _StepLines:
    """What the user sees of each step: its command when it starts, its epochs on the progress bar (a terminal),
    its log lines indented, and its outcome when it ends. Side-by-side steps prefix their log lines."""

    def __init__(self, console: Console, bar: Progress | None, titles: dict[str, str], lines: dict[str, str]):
        self.console, self.bar, self.titles, self.lines = console, bar, titles, lines
        self.tasks: dict[str, int] = {}
        self.started: list[str] = []

    def start(self, name: str) -> None:
        self.console.print(f"{self.titles[name]}: {self.lines[name]}", markup=False, soft_wrap=True)
        self.started.append(name)
        if self.bar is not None:
            self.tasks[name] = self.bar.add_task(escape(self.titles[name]), total=None, unit=UNITS.get(name, "step"))

    def event(self, name: str, kind: str, payload, on_done: Callable[[str, dict], None] | None = None) -> None:
        if kind == "epoch" and self.bar is not None:
            done, total = payload
            self.bar.update(self.tasks[name], completed=done, total=total)
        elif kind == "log":
            prefix = f"{name}: " if len(self.started) > 1 else ""
            self.console.print(f"  {prefix}{payload}", markup=False, soft_wrap=True)
        elif kind == "done":
            if self.bar is not None:
                task = self.tasks[name]
                total = next(t.total for t in self.bar.tasks if t.id == task) or 1
                self.bar.update(task, completed=total, total=total)
                self.bar.stop_task(task)
            on_done(name, payload)
            self.started.remove(name)
            self.console.print(f"{self.titles[name]}: done in {payload['seconds']:.1f}s{_outcome(name, payload)}",
                               markup=False)


class _NoDisplay:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


def _display(console: Console, live: bool):
    if not live:
        return _NoDisplay()
    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=28), MofNCompleteColumn(),
                    TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console)


def _outcome(name: str, result: dict) -> str:
    """The figure a finished step is worth a line for."""
    if result.get("best_miou") is not None:
        return f": best val mIoU {100 * result['best_miou']:.2f}% (epoch {result['best_epoch']})"
    scores = {m: r["mIoU"] for m, r in result.items() if isinstance(r, dict) and "mIoU" in r}
    if scores:
        return ": test mIoU " + ", ".join(f"{m} {100 * v:.2f}%" for m, v in scores.items())
    if "html" in result:
        return f": {result['html']} (distilled vs alone {result['kd_gain']:+.2f} test mIoU points)"
    return ""
