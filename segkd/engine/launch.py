"""`train.devices=`: relaunch the same command under torchrun on this machine (as Ultralytics does).

    segkd train --preset p --data d train.devices=0,1    # == CUDA_VISIBLE_DEVICES=0,1 torchrun --nproc-per-node 2
                                                         #      --master-port <free> -m segkd train --preset p ...
    segkd train --preset p --data d train.devices=4      # the first 4 GPUs (4 CPU processes on gloo without CUDA)

`relaunch_if_requested(train_cfg)` is what a command calls. `devices_to_launch(train_cfg)` reads the key: None
(run here), or (processes, CUDA indices or None); a bad value fails in one line naming it.
`relaunch(nproc, cuda_indices)` runs `torch.distributed.run` in this process with a free port, each worker
re-running this very command line; the workers inherit stdout/stderr and only rank 0 prints (another rank only
its own error, if it fails first), so rank 0's output streams as if it ran here. The exit code is the first
failing worker's; torchrun ends the others, and the failing worker has already said why in one line.
A worker (WORLD_SIZE set by torchrun) never relaunches.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Iterator

import torch
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import get_args_parser, run

from segkd.config import TrainConfig
from segkd.engine.distributed import launched_by_torchrun
from segkd.errors import ConfigError


def relaunch_if_requested(tcfg: TrainConfig) -> int | None:
    """The exit code of the torchrun relaunch `train.devices` asks for; None: run in this process."""
    launch = devices_to_launch(tcfg)
    return None if launch is None else relaunch(*launch)


def devices_to_launch(tcfg: TrainConfig) -> tuple[int, list[int] | None] | None:
    """(processes, CUDA indices or None) that `train.devices` asks for; None: run in this process."""
    value = tcfg.devices
    if value is None or launched_by_torchrun():
        return None
    what = f"train.devices={value if not isinstance(value, list) else ','.join(map(str, value))}"
    hint = "a process count N >= 1 or CUDA indices like 0,1,2,3"
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{what}: expected {hint}")
        if value == 1:
            return None
        if _uses_cuda(tcfg.device):
            _check_cuda_count(what, value)
        return value, None
    indices = _indices(value, what, hint)
    if not _uses_cuda(tcfg.device):
        reason = "train.device=cpu" if tcfg.device.strip().lower() == "cpu" else "CUDA is not available"
        raise ConfigError(f"{what} names CUDA devices but {reason} (use train.devices=N for N CPU processes)")
    _check_cuda_count(what, max(indices) + 1)
    return len(indices), indices


def _indices(value: list[int] | str, what: str, hint: str) -> list[int]:
    parts = value if isinstance(value, list) else [p.strip() for p in value.split(",")]
    if not parts or not all((isinstance(p, int) and p >= 0) or (isinstance(p, str) and p.isdigit()) for p in parts):
        raise ConfigError(f"{what}: expected {hint}")
    indices = [int(p) for p in parts]
    if len(set(indices)) != len(indices):
        raise ConfigError(f"{what}: a device is listed twice")
    return indices


def _uses_cuda(device_spec: str) -> bool:
    spec = (device_spec or "auto").strip().lower()
    return spec.startswith("cuda") or (spec == "auto" and torch.cuda.is_available())


def _check_cuda_count(what: str, needed: int) -> None:
    count = torch.cuda.device_count()
    if needed > count:
        raise ConfigError(f"{what} needs {needed} CUDA device(s) but this machine has {count}")


def free_port() -> int:
    """A TCP port nobody listens on right now (for the rendezvous of a single-machine run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def entry_point(argv: list[str]) -> list[str]:
    """How each worker re-runs `argv`: `-m segkd ...` for `python -m segkd`, else the same script."""
    script = Path(argv[0])
    if script.name == "__main__.py":
        return ["-m", script.resolve().parent.name, *argv[1:]]
    return [str(script), *argv[1:]]


def torchrun_args(nproc: int, port: int, argv: list[str]) -> list[str]:
    """The torchrun command line (without `torchrun`) of a single-machine relaunch of `argv`."""
    return [f"--nproc-per-node={nproc}", "--nnodes=1", "--master-addr=127.0.0.1", f"--master-port={port}",
            "--max-restarts=0", *entry_point(argv)]


def relaunch(nproc: int, cuda_indices: list[int] | None = None, argv: list[str] | None = None) -> int:
    """Run `argv` (this process's command line) under torchrun with `nproc` workers; their exit code."""
    args = get_args_parser().parse_args(torchrun_args(nproc, free_port(), list(argv or sys.argv)))
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))}
    if cuda_indices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, cuda_indices))
    with _environ(env), _quiet_torchrun():
        try:
            run(args)
        except ChildFailedError as e:
            rank, failure = e.get_first_failure()
            if failure.exitcode > 0:
                return failure.exitcode  # the worker printed its one-line error
            print(f"error: rank {rank} was killed by {failure.signal_name()}", file=sys.stderr)
            return 1
    return 0


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """`os.environ` with `values` set (the workers inherit it), restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@contextlib.contextmanager
def _quiet_torchrun() -> Iterator[None]:
    """torchrun's agent logs (rendezvous, 'closing signal SIGTERM', failure tables) off: the workers speak."""
    logging.disable(logging.CRITICAL)  # this process only runs the agent; its loggers set their own levels
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
