"""PyTorch's own distributed engine for `train` and `distill`: the process group torchrun describes, and the few
collectives the Trainer needs.

    torchrun --nproc-per-node 4 -m segkd train --preset fastsegformer-p --data data/oranges
    segkd train --preset fastsegformer-p --data data/oranges train.devices=0,1,2,3   # the same, relaunched

torchrun (or `segkd.engine.launch` for `train.devices=`) starts one process per device with RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT in its environment. `init_distributed(train.device)` turns that into a
process group, nccl on CUDA (each rank on cuda:LOCAL_RANK) or gloo on the CPU, and returns the rank's device;
outside torchrun (or with one process) it is `select_device` and nothing else changes.

- `wrap_ddp(module, device)`: the one DistributedDataParallel wrapper around what trains (the student, with its KD
  adapters when distilling); a no-op in one process.
- `sync_replicas(module)`: rank 0's parameters and buffers copied to every rank (BatchNorm running statistics
  drift apart per rank between DDP's per-forward broadcasts), so every rank validates rank 0's weights: the ones
  it saves.
- `reduce_mean(values)`, `all_reduce_confusion(cm)`: loss averages and the val confusion matrix over all ranks.
- Only rank 0 writes files (`segkd.engine.device.is_main_process`).

Failures: the first rank that raises prints its one-line error (the command boundary prefixes `rank N:`; a
rank whose collective then breaks stays silent, see `silence_echoed_failures`) and exits; torchrun sees the exit
and stops the other ranks (SIGTERM), so no rank waits forever inside a collective. The group is destroyed when
the process exits (atexit), after success or error.
"""

from __future__ import annotations

import atexit
import functools
import os
from datetime import timedelta
from typing import Callable, ParamSpec, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from segkd.engine.device import select_device, world
from segkd.engine.metrics import ConfusionMatrix
from segkd.errors import ConfigError, PeerFailed

P, R = ParamSpec("P"), TypeVar("R")

#: how long a collective may wait for a slow rank (a rank that died is noticed by torchrun long before this)
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


def env_world_size() -> int:
    """WORLD_SIZE that torchrun set (1 outside torchrun): known before any process group exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_by_torchrun() -> bool:
    """True in a worker that torchrun started among two or more."""
    return env_world_size() > 1 and "LOCAL_RANK" in os.environ


def init_distributed(device_spec: str = "auto") -> torch.device:
    """This rank's device; under torchrun the process group is created first (once per process).

    CUDA (train.device auto/cuda with GPUs present): nccl, one GPU per local rank. Otherwise gloo on the CPU.
    """
    if not launched_by_torchrun():
        return select_device(device_spec)
    device = select_device(device_spec)
    if device.type == "cuda":
        local_rank, count = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', local_rank + 1)} processes "
                              f"on this machine but it has {count} CUDA device(s): lower --nproc-per-node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT,
                                device_id=device if device.type == "cuda" else None)
        atexit.register(teardown)
    return device


def teardown() -> None:
    """Destroy the process group (if any); safe to call twice."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def first_to_fail() -> bool:
    """Asked by a failing rank: True for the job's first rank to fail (it prints its error), False for a later
    one, whose error is then the echo of that failure (a collective whose peer went away). True outside
    torch.distributed, or when the job's store does not answer within seconds."""
    if not (dist.is_available() and dist.is_initialized()):
        return True
    try:
        store = dist.distributed_c10d._get_default_store()  # torchrun's store: outlives any worker
        store.set_timeout(timedelta(seconds=5))
        return store.add("segkd/failed_ranks", 1) == 1
    except Exception:  # noqa: BLE001  (no store: better two messages than none)
        return True


def silence_echoed_failures(fn: Callable[P, R]) -> Callable[P, R]:
    """Around a distributed job (`Trainer.train`): an exception on a rank that is not the job's first to fail
    (its collective broke because a peer went away) becomes `PeerFailed`, which the CLI exits on silently; the
    first failure propagates as it is."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except PeerFailed:
            raise
        except (Exception, KeyboardInterrupt) as e:
            if world()[1] > 1 and not first_to_fail():
                raise PeerFailed(f"rank {dist.get_rank()} stopped: another rank failed first") from e
            raise

    return wrapper


def _comm_device() -> torch.device:
    """Where collective buffers live: the rank's GPU under nccl, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def wrap_ddp(module: nn.Module, device: torch.device, *, static_graph: bool = True) -> nn.Module:
    """`module` in DistributedDataParallel under torch.distributed (rank 0's weights broadcast to all), else
    `module` itself.

    A static graph lets DDP learn in the first step which parameters the loss never reaches (FastSegFormer's
    plain forward skips two stage norms that only its KD taps use) at no cost afterwards. Freezing the backbone
    for some epochs changes that set, so then (`static_graph=False`) DDP searches the graph every step.
    """
    if world()[1] == 1:
        return module
    return nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None,
        static_graph=static_graph, find_unused_parameters=not static_graph,
    )


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm -> SyncBatchNorm (statistics over the global batch) when more than one process trains."""
    if world()[1] == 1:
        return model
    if device.type != "cuda":
        raise ConfigError("train.sync_bn=true needs CUDA devices (PyTorch's SyncBatchNorm runs on GPUs only)")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


@torch.no_grad()
def sync_replicas(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers into every rank's `module` (in place)."""
    if world()[1] == 1:
        return
    for tensor in module.state_dict().values():
        if tensor.device.type == _comm_device().type:
            dist.broadcast(tensor, src=0)
        else:
            staged = tensor.to(_comm_device())
            dist.broadcast(staged, src=0)
            tensor.copy_(staged)


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on any: ranks agree to skip a step or stop at the same boundary."""
    if world()[1] == 1:
        return flag
    t = torch.tensor([int(flag)], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the ranks (every rank passes the same keys in the same order)."""
    if world()[1] == 1 or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return dict(zip(values, (t / world()[1]).tolist()))


def all_reduce_confusion(cm: ConfusionMatrix | None, ignore_index: int) -> ConfusionMatrix | None:
    """The sum of every rank's confusion matrix (a rank that saw no image passes None); exact (int64)."""
    if world()[1] == 1:
        return cm
    k = torch.tensor([cm.num_classes if cm is not None else 0], device=_comm_device())
    dist.all_reduce(k, op=dist.ReduceOp.MAX)
    k = int(k.item())
    matrix = torch.zeros(k, k, dtype=torch.int64)
    if cm is not None:
        matrix += torch.from_numpy(cm.matrix)
    matrix = matrix.to(_comm_device())
    dist.all_reduce(matrix)
    return ConfusionMatrix.from_matrix(matrix.cpu().numpy(), ignore_index) if k else None
