"""The timing protocol: warm-up, ≥ iters and ≥ min-time, statistics, peak memory."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from segkd.deploy.timing import PeakMemory, Protocol, Timing, measure, measure_interleaved


def test_warmup_then_at_least_iters_calls():
    calls = []
    timing = measure(lambda: calls.append(1), Protocol(warmup=3, iters=7, min_time=0.0))
    assert len(calls) == 10 and timing.n == 7


def test_min_time_extends_the_run():
    timing = measure(lambda: time.sleep(0.01), Protocol(warmup=0, iters=1, min_time=0.1))
    assert timing.n >= 5 and timing.mean >= 9.0


def test_statistics():
    t = Timing([10.0, 20.0, 30.0, 40.0, 100.0], batch=2)
    assert t.mean == 40.0 and t.median == 30.0 and t.p90 == 100.0
    assert t.fps == 2 * 1000.0 / 40.0


_PEAK_PROBE = """
import numpy as np
from pathlib import Path
from segkd.deploy.timing import PeakMemory
rss = lambda: int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
with PeakMemory("cpu") as mem:
    before = rss()
    block = np.ones(128 * 2**20 // 8)  # 128 MB, freed before the block ends
    del block
print(before, mem.mb)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc only")
def test_peak_memory_sees_an_allocation():
    # a fresh process: in the test process, memory freed by earlier tests can stay resident and be reused
    out = subprocess.run([sys.executable, "-c", _PEAK_PROBE], capture_output=True, text=True, check=True).stdout
    before, peak = map(float, out.split())
    assert peak >= before + 100


def test_measure_interleaved_alternates_rounds():
    order = []
    calls = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    timings = measure_interleaved(calls, Protocol(warmup=1, iters=4, min_time=0.0), rounds=2)
    assert order == ["a", "b"] + ["a", "a", "b", "b"] * 2  # one warm-up each, then 2 calls per round in turn
    assert {name: t.n for name, t in timings.items()} == {"a": 4, "b": 4}
