"""The timing protocol shared by `segkd bench`, `segkd export --int8` and benchmarks/speed.py.

MMSegmentation-style: `warmup` untimed calls, then timed calls until at least `iters` calls AND `min_time`
seconds have passed. Each call is timed on its own: on CUDA with a pair of CUDA events (the stream is
synchronised once at the end, so timing does not serialise the GPU), on the CPU with `time.perf_counter`.
Latency = mean / median / p90 of the per-call times; FPS = images per second = batch · 1000 / mean ms.

Peak memory: on CUDA `torch.cuda.max_memory_allocated` (reset per measurement); on the CPU the process peak
resident set (Linux VmHWM, reset per measurement through /proc/self/clear_refs when the kernel allows,
so it includes the framework's own baseline; elsewhere `ru_maxrss`).
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class Protocol:
    warmup: int = 5
    iters: int = 100
    min_time: float = 2.0  # seconds
    batch: int = 1


@dataclass
class Timing:
    times_ms: list[float]
    batch: int = 1

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times_ms)

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p90(self) -> float:
        ordered = sorted(self.times_ms)
        return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]

    @property
    def fps(self) -> float:
        return 1000.0 * self.batch / self.mean if self.mean > 0 else float("inf")

    @property
    def n(self) -> int:
        return len(self.times_ms)


def measure(fn: Callable[[], Any], protocol: Protocol = Protocol(), device: torch.device | str = "cpu") -> Timing:
    """Time `fn()` by the protocol (CUDA events on a CUDA device, perf_counter on the CPU)."""
    cuda = torch.device(device).type == "cuda"
    for _ in range(protocol.warmup):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
        return _measure_cuda(fn, protocol, device)
    times, start = [], time.perf_counter()
    while len(times) < max(1, protocol.iters) or time.perf_counter() - start < protocol.min_time:
        t0 = time.perf_counter()
        fn()
        times.append(1000.0 * (time.perf_counter() - t0))
    return Timing(times, protocol.batch)


def measure_interleaved(calls: dict[str, Callable[[], Any]], protocol: Protocol = Protocol(), rounds: int = 5
                        ) -> dict[str, Timing]:
    """Time several CPU callables against each other: each warmed up once, then the protocol split into `rounds`
    slices (iters/rounds calls and min_time/rounds seconds) run in turn, so a load change on a shared machine
    hits every one alike."""
    part = Protocol(0, max(1, protocol.iters // rounds), protocol.min_time / rounds, protocol.batch)
    for call in calls.values():
        for _ in range(protocol.warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            times[name] += measure(call, part).times_ms
    return {name: Timing(t, protocol.batch) for name, t in times.items()}


def _measure_cuda(fn: Callable[[], Any], protocol: Protocol, device: torch.device | str) -> Timing:
    pairs, start = [], time.perf_counter()
    while len(pairs) < max(1, protocol.iters) or time.perf_counter() - start < protocol.min_time:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        pairs.append((begin, end))
        if len(pairs) % 50 == 0:  # keep the wall-clock test meaningful without a sync per call
            torch.cuda.synchronize(device)
    torch.cuda.synchronize(device)
    return Timing([b.elapsed_time(e) for b, e in pairs], protocol.batch)


class PeakMemory:
    """`with PeakMemory(device) as mem: ...` then `mem.mb`: the peak during the block (see module doc)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.cuda = torch.device(device).type == "cuda"
        self.device = device
        self.mb: float | None = None

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _reset_rss_peak()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.mb = _rss_peak_mb()


def _reset_rss_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _rss_peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
