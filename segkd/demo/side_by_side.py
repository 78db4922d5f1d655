"""Run independent demo steps at the same time, each in its own process with one PyTorch thread.

At the demo's sizes a second PyTorch thread speeds a training step up by only 1.4-1.6× (benchmarks/demo_threads.py:
FastSegFormer-P at 128 px, batch 2, 316 vs 221 ms; SegFormer-B1 at 160 px, 342 vs 217 ms), so two one-thread runs
on 2 cores do more work than two two-thread runs in turn: the demo's teacher and student alone took 190 s side by
side, 238 s one after the other. Each child runs the same step function as the sequential path; it sends its
epochs, log lines and result (or its exception) back through one queue, and the parent records each step in the
state file as soon as it ends, so an interrupted demo resumes at the unfinished one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue as queue_lib
import time
from dataclasses import replace
from typing import Callable

import torch

from segkd.demo.plan import DemoPaths, DemoPlan
from segkd.demo.steps import STEPS, DemoContext

def run_side_by_side(names: list[str], plan: DemoPlan, paths: DemoPaths, results: dict[str, dict],
                     on_event: Callable[[str, str, object], None]) -> None:
    """Run the steps `names` in one process each and call `on_event(step, kind, payload)` in this process for
    every event until all have ended: kind "epoch" (payload: done, total), "log" (a line) or "done" (the result).
    The first failure is raised here after the others have stopped."""
    ctx = mp.get_context("spawn")  # no fork of a process that already holds PyTorch's thread pools
    events = ctx.Queue()
    children = {name: ctx.Process(target=_child, args=(name, replace(plan, threads=1), paths, results, events),
                                  name=f"segkd-demo-{name}") for name in names}
    for child in children.values():
        child.start()
    running, ended = set(names), False
    try:
        while running:
            try:
                step, kind, payload = events.get(timeout=0.5)
            except queue_lib.Empty:
                _check_alive(children, running)
                continue
            if kind == "error":
                raise payload
            on_event(step, kind, payload)
            if kind == "done":
                running.discard(step)
        ended = True
    finally:
        for child in children.values():  # after a failure (or Ctrl-C, which the children get too) the others stop
            child.join(timeout=None if ended else 30)
            if child.is_alive():
                child.terminate()


def _check_alive(children: dict, running: set[str]) -> None:
    """A step whose process died without a word (killed) is an error."""
    for name in running:
        code = children[name].exitcode
        if code is not None:
            raise RuntimeError(f"demo step {name!r}: its process ended with exit code {code} before it finished")


def _child(name: str, plan: DemoPlan, paths: DemoPaths, results: dict[str, dict], events) -> None:
    """One step in a spawned process: the same function and context as the sequential path."""
    torch.set_num_threads(plan.threads)
    step = dict(STEPS)[name]
    ctx = DemoContext(plan, paths, results, lambda done, total: events.put((name, "epoch", (done, total))),
                      lambda message: events.put((name, "log", message)))
    start = time.perf_counter()
    try:
        result = step(ctx) | {"seconds": round(time.perf_counter() - start, 1), "pid": os.getpid()}
    except BaseException as exc:  # noqa: BLE001 -- sent to the parent, which raises it
        events.put((name, "error", _picklable(exc)))
        return
    events.put((name, "done", result))


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")
