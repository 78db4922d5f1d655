"""Run the demo's steps in order, skipping those the state file records as finished, with a progress display.

On a terminal a rich display shows each step, its epoch and the ETA; off a terminal (or with `CI` set) it
prints one line when a step starts (with the equivalent `segkd` command) and one when it ends.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from segkd.deploy.backends import torch_threads
from segkd.demo.plan import DemoPaths, commands, make_plan
from segkd.demo.state import DemoState
from segkd.demo.steps import STEPS, DemoContext
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
    with torch_threads(plan.threads), _display(console, live) as bar:
        for index, (name, step) in enumerate(STEPS, 1):
            title = f"[{index}/{len(STEPS)}] {name}"
            if state.done(name):
                console.print(f"{title}: done earlier ({paths.state.name}), skipped", markup=False)
                continue
            console.print(f"{title}: {lines[name]}", markup=False, soft_wrap=True)
            task = bar.add_task(escape(title), total=None, unit=UNITS.get(name, "step")) if bar else None

            def on_epoch(done: int, total: int, task=task) -> None:
                if bar is not None:
                    bar.update(task, completed=done, total=total)

            ctx = DemoContext(plan, paths, state.steps, on_epoch, lambda m: console.print(f"  {m}", markup=False,
                                                                                           soft_wrap=True))
            start = time.perf_counter()
            result = step(ctx) | {"seconds": round(time.perf_counter() - start, 1)}
            if bar is not None:
                total = bar.tasks[-1].total or 1  # this step's task: the last one added
                bar.update(task, completed=total, total=total)
                bar.stop_task(task)
            state.finish(name, result)
            console.print(f"{title}: done in {result['seconds']:.1f}s{_outcome(name, result)}", markup=False)
    return state


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
