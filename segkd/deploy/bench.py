"""`segkd bench` as a plain function: one row per model × backend × precision, timed by one protocol.

Targets: presets (random weights: speed only), segkd checkpoints, any weights file with one preset, and
exported `.onnx` files (ONNX Runtime only). Per row: params (M), GFLOPs (fvcore, batch 1: one fused
multiply-add counts as one FLOP, as the papers' tables), latency mean / median / p90 (ms per batch), FPS
(images/s), peak memory, and val mIoU when data is given and the weights are trained. A row that cannot run
(a compile failure, a fixed-size model at another size) is kept with status ❌ and the reason.

Model-only (default) times the forward pass on an input already on the device; `e2e` times JPEG decode +
preprocess + forward + softmax/restore/argmax per batch of images.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from torch import nn

from segkd.config import config_to_dict, load_config
from segkd.data.dataset import open_dataset
from segkd.deploy.backends import Runner, ort_runner, torch_runner, torch_threads
from segkd.deploy.export import export_onnx
from segkd.deploy.loading import is_onnx, load_model
from segkd.deploy.meta import DeployMeta
from segkd.deploy.onnx_model import OnnxModel
from segkd.deploy.predictor import Predictor
from segkd.deploy.quantize import calibration_images
from segkd.deploy.timing import PeakMemory, Protocol, measure
from segkd.deploy.verify import synthetic_image
from segkd.engine.evaluator import evaluate_model
from segkd.errors import ConfigError, DataError, first_line
from segkd.models import build_model

with warnings.catch_warnings():  # fvcore scripts a function at import time, which torch now warns about
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis

BACKENDS = ("torch", "compile", "onnxruntime")


@dataclass
class BenchTarget:
    name: str
    meta: DeployMeta
    model: nn.Module | None  # None for an ONNX file
    onnx: Path | None = None  # an ONNX file given as weights
    trained: bool = False  # real weights: mIoU is meaningful
    data_cfg: dict = field(default_factory=dict)  # format, splits, absent mode for the mIoU


@dataclass
class BenchOptions:
    backends: tuple[str, ...] = ("torch",)
    imgsz: tuple[int, int] | None = None  # None = each model's own input size
    batch: int = 1
    precision: str = "fp32"  # fp32 | fp16 | bf16
    e2e: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    threads: int | None = None
    protocol: Protocol = field(default_factory=Protocol)
    data: Path | None = None
    workdir: Path = Path("runs/bench")  # exported ONNX files go to workdir/onnx/


@dataclass
class BenchRow:
    model: str
    backend: str
    dtype: str
    status: str = "✅"
    notes: str = ""  # how it ran (BN folded, layout, provider) or, for ❌, why it failed
    input: str = ""  # H×W
    params_m: float | None = None
    gflops: float | None = None
    mean_ms: float | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    fps: float | None = None
    peak_mb: float | None = None
    miou: float | None = None  # val mIoU in % (None without data or trained weights)
    iters: int = 0


def load_targets(presets: list[str], weights: list[str], overrides: list[str] | None = None) -> list[BenchTarget]:
    """Presets alone: random weights. Weights alone: checkpoints / ONNX. One preset + weights: foreign files."""
    if not presets and not weights:
        raise ConfigError("nothing to bench: give --preset NAME[,NAME] and/or --weights FILE")
    if weights and len(presets) > 1:
        raise ConfigError("--weights with several presets is ambiguous: give one --preset (or none)")
    targets = []
    for w in weights:
        if is_onnx(w):
            onnx_model = OnnxModel(w)
            targets.append(BenchTarget(Path(w).stem, onnx_model.meta, None, Path(w), trained=True))
            continue
        loaded = load_model(w, presets[0] if presets else None, overrides)
        targets.append(BenchTarget(Path(w).stem, loaded.meta, loaded.model, trained=True,
                                   data_cfg=_data_cfg(loaded.config)))
    if not weights:
        for name in presets:
            config = config_to_dict(load_config(name, overrides))
            model = build_model(config["model"]).eval()
            targets.append(BenchTarget(name, DeployMeta.from_config(config), model, data_cfg=_data_cfg(config)))
    return targets


def _data_cfg(config: dict) -> dict:
    data = config["data"]
    return {"format": data.get("format", "auto"), "val_split": data.get("val_split", "val"),
            "absent": (config.get("eval") or {}).get("absent", "nan")}


def row_dtypes(backend: str, precision: str, device: torch.device) -> list[str]:
    """The precisions one backend is timed in (see `segkd.deploy.backends`)."""
    if backend == "onnxruntime":
        return ["fp16" if precision == "fp16" and device.type == "cuda" else "fp32"]
    if precision == "fp16" and device.type == "cuda":
        return ["fp16-autocast", "fp16"]
    if precision in ("fp16", "bf16"):
        return ["bf16-autocast"]  # CPU has no fast fp16 path: bf16 autocast (AVX-512 BF16 / AMX where present)
    return ["fp32"]


def bench(targets: list[BenchTarget], opts: BenchOptions, log: Callable[[str], None] = lambda m: None,
          progress: bool = False) -> list[BenchRow]:
    rows = []
    with torch_threads(opts.threads):
        for target in targets:
            hw = _input_size(target, opts)
            stats = _complexity(target, hw)
            for backend in opts.backends:
                if target.model is None and backend != "onnxruntime":
                    continue  # an ONNX file runs on ONNX Runtime only
                dtypes = [target.meta.precision] if target.onnx else row_dtypes(backend, opts.precision, opts.device)
                for dtype in dtypes:  # an ONNX file runs in the precision it was exported in
                    log(f"bench: {target.name} · {backend} · {dtype}")
                    row = BenchRow(target.name, backend, dtype, input=f"{hw[0]}×{hw[1]}", **stats)
                    _run_row(row, target, hw, opts, progress)
                    rows.append(row)
    return rows


def _run_row(row: BenchRow, target: BenchTarget, hw: tuple[int, int], opts: BenchOptions, progress: bool) -> None:
    try:
        runner = _runner(target, row.backend, row.dtype, hw, opts)
        fn = _e2e_call(runner, target, hw, opts) if opts.e2e else runner.forward
        with PeakMemory(opts.device) as mem:
            timing = measure(fn, Protocol(opts.protocol.warmup, opts.protocol.iters, opts.protocol.min_time,
                                          opts.batch), runner.clock)
        row.mean_ms, row.median_ms, row.p90_ms, row.fps = timing.mean, timing.median, timing.p90, timing.fps
        row.peak_mb, row.iters = mem.mb, timing.n
        row.notes = "; ".join(runner.notes)
        if opts.data is not None and target.trained:
            row.miou = 100.0 * _miou(runner, target, hw, opts, progress)
        elif opts.data is not None:
            row.notes += "; random weights (a preset alone): no mIoU"
    except Exception as e:  # noqa: BLE001  (one failing row must not stop the table: keep the reason)
        row.status, row.notes = "❌", f"{type(e).__name__}: {first_line(e)}"[:240]


def _input_size(target: BenchTarget, opts: BenchOptions) -> tuple[int, int]:
    if target.onnx is not None and "height" not in target.meta.dynamic:
        return tuple(target.meta.input_size)  # a static graph runs at its own size
    return tuple(opts.imgsz or target.meta.input_size)


def _runner(target: BenchTarget, backend: str, dtype: str, hw: tuple[int, int], opts: BenchOptions) -> Runner:
    shape = (opts.batch, 3, *hw)
    if backend == "onnxruntime":
        path = target.onnx
        if path is None:
            path = opts.workdir / "onnx" / f"{target.name}_{hw[0]}x{hw[1]}_b{opts.batch}_{dtype}.onnx"
            half = dtype == "fp16"
            export_onnx(target.model, target.meta, path, imgsz=hw, batch=opts.batch, half=half,
                        device=opts.device if half else "cpu")
        return ort_runner(path, shape, opts.device, opts.threads or torch.get_num_threads())
    return torch_runner(target.model, shape, opts.device, dtype, compile=backend == "compile")


def _complexity(target: BenchTarget, hw: tuple[int, int]) -> dict:
    """Params (M) and fvcore GFLOPs for one image; None where they cannot be counted."""
    if target.model is None:
        return {"params_m": OnnxModel(target.onnx).params / 1e6, "gflops": None}
    params = sum(p.numel() for p in target.model.parameters()) / 1e6
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            flops = FlopCountAnalysis(target.model.eval(), torch.zeros(1, 3, *hw))
            flops.unsupported_ops_warnings(False)
            flops.uncalled_modules_warnings(False)
            gflops = flops.total() / 1e9
    except Exception:  # noqa: BLE001  (a fixed-size model at another size, an untraceable op)
        gflops = None
    return {"params_m": params, "gflops": gflops}


def _e2e_call(runner: Runner, target: BenchTarget, hw: tuple[int, int], opts: BenchOptions) -> Callable[[], object]:
    """decode + preprocess + forward + postprocess for one batch of JPEG-encoded images."""
    predictor = Predictor(runner.run, target.meta.replace(input_size=list(hw)), target.name, runner.backend,
                          runner.device)
    jpegs = [cv2.imencode(".jpg", cv2.cvtColor(im, cv2.COLOR_RGB2BGR))[1] for im in _sample_images(target, hw, opts)]

    def call() -> list[np.ndarray]:
        images = [cv2.cvtColor(cv2.imdecode(b, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for b in jpegs]
        return predictor.predict(images)

    return call


def _sample_images(target: BenchTarget, hw: tuple[int, int], opts: BenchOptions) -> list[np.ndarray]:
    if opts.data is not None:
        with contextlib.suppress(DataError):
            cfg = {"ignore_index": target.meta.ignore_index, **target.data_cfg}
            images = calibration_images(opts.data, cfg, opts.batch)
            return [images[i % len(images)] for i in range(opts.batch)]
    return [synthetic_image(int(hw[0] * 1.25), int(hw[1] * 1.5), seed=i) for i in range(opts.batch)]


def _miou(runner: Runner, target: BenchTarget, hw: tuple[int, int], opts: BenchOptions, progress: bool) -> float:
    meta = target.meta
    dataset = open_dataset(opts.data, target.data_cfg.get("val_split", "val"),
                           format=target.data_cfg.get("format", "auto"), num_classes=meta.num_classes,
                           ignore_index=meta.ignore_index)
    data_cfg = {"input_size": list(hw), "resize": meta.resize, "mean": meta.mean, "std": meta.std,
                "pad_value": meta.pad_value, "ignore_index": meta.ignore_index, "classes": meta.classes}
    metrics = evaluate_model(runner.module, dataset, data_cfg, device=runner.device, batch_size=opts.batch,
                             absent=target.data_cfg.get("absent", "nan"), progress=progress)
    return float(metrics.mIoU)
