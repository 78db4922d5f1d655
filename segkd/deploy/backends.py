"""Inference backends for `segkd bench`: PyTorch eager, `torch.compile`, ONNX Runtime, in one shape.

A `Runner` offers the same model three ways: `forward()` (one model-only call on an input already on the
device: what latency measures), `run(batch)` (numpy in, scores out: the end-to-end predictor) and `module`
(an `nn.Module` for the evaluator's mIoU).

PyTorch runners fold BatchNorm into the preceding convs (exact in eval mode; fewer kernels) and take whichever
memory layout, NCHW or channels_last, a 5-call probe finds faster for that model on that device (PoolFormer's
GroupNorm and EfficientFormerV2's BN convs do not prefer the same one); the row notes say which.

Precisions (`dtype`): `fp32`; `fp16` = the model cast with `.half()` (CUDA); `fp16-autocast` /
`bf16-autocast` = fp32 weights under `torch.autocast`. ONNX Runtime runs the exported graph as it is.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.fx.experimental.optimization import fuse

from segkd.deploy.onnx_model import OnnxModel, OnnxModule, session_options
from segkd.deploy.timing import Protocol, measure

AUTOCAST = {"fp16-autocast": torch.float16, "bf16-autocast": torch.bfloat16}


class CastModule(nn.Module):
    """Runs `model` in a lower precision and returns float32 scores (for the evaluator and predictor)."""

    def __init__(self, model: nn.Module, dtype: str, device: torch.device):
        super().__init__()
        self.model, self.dtype, self.device_type = model, dtype, device.type
        self.fixed_input_size = getattr(model, "fixed_input_size", None)
        self.size_divisor = getattr(model, "size_divisor", 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.dtype == "fp16":
            return self.model(x.half()).float()
        if self.dtype in AUTOCAST:
            with torch.autocast(self.device_type, dtype=AUTOCAST[self.dtype]):
                return self.model(x).float()
        return self.model(x)


@dataclass
class Runner:
    backend: str  # torch | compile | onnxruntime
    dtype: str
    device: torch.device
    forward: Callable[[], Any]  # one model-only call (input prepared on the device)
    run: Callable[[np.ndarray], Tensor]  # B×3×H×W float32 -> B×K×h×w scores (or B×h×w labels)
    module: nn.Module  # the same, as an nn.Module for `evaluate_model`
    notes: list[str] = field(default_factory=list)
    clock: torch.device = torch.device("cpu")  # CUDA events on a CUDA clock; ORT's run() blocks: wall clock


def torch_runner(model: nn.Module, shape: tuple[int, ...], device: torch.device, dtype: str = "fp32",
                 compile: bool = False) -> Runner:
    """Eager (or compiled) PyTorch on `device`, BatchNorm folded, in the faster memory layout; the caller's
    model is never modified."""
    model = copy.deepcopy(model).eval()
    folded = fold_batchnorm(model)
    model = model.to(device)
    if dtype == "fp16":
        model = model.half()
    net: nn.Module = CastModule(model, dtype, device)
    layout = faster_layout(net, shape, device)
    net = net.to(memory_format=layout)
    notes = [f"{folded} BN folded", "channels_last" if layout == torch.channels_last else "NCHW"]
    if compile:
        net, seconds = compiled(net, shape, device, dtype)
        notes.append(f"compiled in {seconds:.1f}s")
    x = torch.randn(*shape, device=device).contiguous(memory_format=layout)

    @torch.inference_mode()
    def forward() -> Tensor:
        return net(x)

    @torch.inference_mode()
    def run(batch: np.ndarray) -> Tensor:
        return net(torch.from_numpy(batch).to(device))

    return Runner("compile" if compile else "torch", dtype, device, forward, run, net, notes, clock=device)


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every BatchNorm2d that follows a Conv2d into it (eval mode), in place; returns how many.

    Uses torch.fx's conv-bn fusion on the largest sub-modules that fx can trace (a whole segkd model cannot:
    its input checks branch on shapes), so only true conv -> bn data flow is folded.
    """
    folded = 0
    for name, child in list(module.named_children()):
        bns = sum(isinstance(m, nn.BatchNorm2d) for m in child.modules())
        if not bns:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fused = fuse(child)
        except Exception:  # noqa: BLE001  (not traceable: try its children)
            folded += fold_batchnorm(child)
            continue
        setattr(module, name, fused)
        folded += bns - sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    return folded


@torch.inference_mode()
def faster_layout(net: nn.Module, shape: tuple[int, ...], device: torch.device, calls: int = 5) -> torch.memory_format:
    """NCHW or channels_last, whichever runs `net` faster (median of `calls` after two warm-up calls)."""
    best, best_ms = torch.contiguous_format, float("inf")
    for layout in (torch.contiguous_format, torch.channels_last):
        net.to(memory_format=layout)
        x = torch.randn(*shape, device=device).contiguous(memory_format=layout)
        timing = measure(lambda: net(x), Protocol(warmup=2, iters=calls, min_time=0.0), device)
        if timing.median < best_ms:
            best, best_ms = layout, timing.median
    return best


def compiled(net: nn.Module, shape: tuple[int, ...], device: torch.device, dtype: str) -> tuple[nn.Module, float]:
    """`torch.compile(net)` plus one call to trigger compilation (errors surface here, not mid-timing)."""
    start = time.perf_counter()
    net = torch.compile(net, dynamic=False)
    logger = logging.getLogger("torch.utils.cpp_extension")  # "No CUDA runtime is found" on CPU-only hosts
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            net(torch.randn(*shape, device=device))
    finally:
        logger.setLevel(level)
    return net, time.perf_counter() - start


def ort_runner(path: str | Path, shape: tuple[int, ...], device: torch.device, threads: int | None = None) -> Runner:
    """ONNX Runtime with segkd's session options (see `segkd.deploy.onnx_model.session_options`)."""
    onnx_model = OnnxModel(path, device, options=session_options(threads))
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32).astype(onnx_model.input_dtype)
    return Runner("onnxruntime", onnx_model.meta.precision, device, lambda: onnx_model(x), lambda b: torch.from_numpy(onnx_model(b)),
                  OnnxModule(onnx_model), [f"provider {onnx_model.providers[0]}"])


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily set PyTorch's intra-op thread count."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
