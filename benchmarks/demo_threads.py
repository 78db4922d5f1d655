"""Why `segkd demo` trains the teacher and the student side by side: at the demo's sizes a second thread speeds a
training step up by much less than 2×, so two one-thread processes on 2 cores get more done than one two-thread
process at a time (measured: 316 vs 221 ms FastSegFormer-P, 342 vs 217 ms SegFormer-B1, quiet 2-core machine).

    python benchmarks/demo_threads.py [--steps 10] [--rounds 3]

For the demo's teacher (SegFormer-B1 at 160 px) and student (FastSegFormer-P at 128 px), batch 2, random weights:
the median time of one training step (forward, CE, backward, fused AdamW) with 1 and with 2 PyTorch threads,
interleaved in rounds so that load from other processes hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from segkd.demo.plan import DemoPlan
from segkd.models import create_model


def step_ms(model: torch.nn.Module, optimizer: torch.optim.Optimizer, size: int, steps: int) -> float:
    x, y = torch.randn(2, 3, size, size), torch.randint(0, 4, (2, size, size))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round and thread count")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    plan = DemoPlan()
    print(f"torch {torch.__version__}, batch 2, median train step in ms over {args.rounds} rounds")
    print(f"{'model':<28}{'1 thread':>10}{'2 threads':>11}{'1 vs 2':>8}")
    for arch, size in (("segformer_b1", plan.teacher_size), ("fastsegformer_p", plan.student_size)):
        torch.manual_seed(0)
        model = create_model(arch, num_classes=4).train()
        optimizer = torch.optim.AdamW(model.parameters(), 1e-4, fused=True)
        step_ms(model, optimizer, size, 3)  # warm-up
        found = {1: [], 2: []}
        for _ in range(args.rounds):
            for threads in found:
                torch.set_num_threads(threads)
                found[threads].append(step_ms(model, optimizer, size, args.steps))
        one, two = statistics.median(found[1]), statistics.median(found[2])
        print(f"{f'{arch} {size} px':<28}{one:>10.0f}{two:>11.0f}{one / two:>7.2f}×")


if __name__ == "__main__":
    main()
