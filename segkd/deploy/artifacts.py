"""`segkd export` as a plain function: every requested artifact exported, then verified against PyTorch.

Artifacts: `<out>` (fp32, always: fp16 and int8 derive from it), `<out stem>.fp16.onnx` with fp16,
`<out stem>.int8.onnx` with int8. An artifact that fails verification is renamed `<name>.onnx.unverified`
and makes the job fail (the later artifacts are not built from an unverified fp32 graph).

Real images for verification: the `calib` data (val split), else the config's `data.root` when it exists,
else a synthetic natural-looking image. int8 additionally reports val mIoU (fp32 vs int8 ONNX Runtime on the
whole val split) and the latency of both (batch 1). With `int8_ops="auto"` every op set of
`quantize.INT8_OP_SETS` is built, verified and scored, and `pick_int8` keeps the fastest one that loses at most
`MAX_INT8_DROP` mIoU points (the most accurate one when none does); the others are scratch files and are removed.

A quantisation-aware (QAT) checkpoint (`segkd.deploy.qat_export`): the fp32 file is its weights with the fake
quantisers off, the int8 file its fake-quantised model traced with the learned scales (no calibration: `--calib`
only names the val data, else the config's data.root serves), verified against the fake-quantised PyTorch
labels on up to `QAT_PARITY_IMAGES` val images (≥ 99.5 % agreement) and scored like post-training int8.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from segkd.data.dataset import open_dataset
from segkd.deploy.export import OnnxExport, export_onnx
from segkd.deploy.fp16 import export_fp16
from segkd.deploy.loading import LoadedModel
from segkd.deploy.onnx_model import OnnxModel, OnnxModule
from segkd.deploy.qat_export import QAT_MIN_AGREEMENT, export_qat_int8, float_twin
from segkd.deploy.quantize import INT8_OP_SETS, calibration_images, quantize_int8
from segkd.deploy.timing import Protocol, measure_interleaved
from segkd.deploy.verify import ParityReport, parity_inputs, synthetic_image, verify_onnx
from segkd.engine.evaluator import evaluate_model
from segkd.errors import ConfigError, DataError
from segkd.outputs import record_output
from segkd.quant import is_qat

PARITY_IMAGES = {"fp32": 2, "fp16": 2, "int8": 4}
MAX_INT8_DROP = 0.5  # val mIoU points that int8_ops="auto" may give up for speed
QAT_PARITY_IMAGES = 16


@dataclass
class ExportRequest:
    out: Path  # the fp32 file
    imgsz: tuple[int, int] | None = None  # None = the config's input size
    dynamic: bool = False
    fp16: bool = False
    int8: bool = False
    calib: Path | None = None  # dataset root: int8 calibration + real verification images
    simplify: bool = True
    opset: int = 17
    argmax: bool = False
    device: str = "cpu"  # cuda: fp16 is traced in half on the GPU and verified with the CUDA EP when present
    threads: int | None = None  # ONNX Runtime intra-op threads for the int8 latency figures
    int8_ops: str = "auto"  # a key of quantize.INT8_OP_SETS, or auto: build each, keep the fastest accurate one


@dataclass
class Artifact:
    format: str  # ONNX fp32 | ONNX fp16 | ONNX int8
    path: Path
    ok: bool
    seconds: float
    parity: ParityReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def mb(self) -> float:
        return self.path.stat().st_size / 2**20 if self.path.is_file() else 0.0


@dataclass
class Int8Report:
    miou_fp32: float  # val mIoU (0..1) of the fp32 graph on ONNX Runtime
    miou_int8: float
    ms_fp32: float  # median latency, batch 1
    ms_int8: float
    val_images: int
    calib_images: int
    op_set: str = "conv"  # the kept INT8_OP_SETS key
    tried: dict[str, tuple[float, float]] = field(default_factory=dict)  # op set -> (val mIoU, ms) of each built
    qat: bool = False  # the scales were learned in quantisation-aware training (no calibration)

    @property
    def speedup(self) -> float:
        return self.ms_fp32 / self.ms_int8

    @property
    def miou_drop(self) -> float:  # mIoU points lost (×100)
        return 100.0 * (self.miou_fp32 - self.miou_int8)


@dataclass
class ExportReport:
    source: str
    artifacts: list[Artifact] = field(default_factory=list)
    int8: Int8Report | None = None

    @property
    def failures(self) -> list[str]:
        return [f"{a.format}: {'; '.join(a.parity.failures) if a.parity else 'failed'}"
                for a in self.artifacts if not a.ok]


def export_outputs(target: Path, fp16: bool, int8: bool) -> list[Path]:
    """Every file an export may write: the fp32 file, the fp16/int8 ones asked for, and their `.unverified` names."""
    files = [target] + [target.with_name(f"{target.stem}.{p}.onnx") for p, on in (("fp16", fp16), ("int8", int8)) if on]
    return files + [f.with_name(f.name + ".unverified") for f in files]


def export_artifacts(loaded: LoadedModel, req: ExportRequest, log: Callable[[str], None] = lambda m: None
                     ) -> ExportReport:
    qat = is_qat(loaded.model)
    if req.int8_ops != "auto" and req.int8_ops not in INT8_OP_SETS:
        raise ConfigError(f"int8 op set '{req.int8_ops}': expected auto, {', '.join(INT8_OP_SETS)}")
    if qat and req.int8_ops not in ("auto", loaded.model.qat_spec.op_set):
        raise ConfigError(f"--int8-ops {req.int8_ops}: this QAT checkpoint learned its scales for op set "
                          f"'{loaded.model.qat_spec.op_set}'; drop --int8-ops")
    report = ExportReport(loaded.name)
    model, device = (float_twin(loaded.model) if qat else loaded.model), torch.device(req.device)
    kwargs = dict(imgsz=req.imgsz, dynamic=req.dynamic, opset=req.opset, argmax=req.argmax, simplify=req.simplify)
    calib = _calibration(loaded, req) if req.int8 and not qat else None  # bad --calib data fails before any write
    images = calib or _real_images(loaded, req, QAT_PARITY_IMAGES if qat else max(PARITY_IMAGES.values()))
    log(f"ONNX: exporting {loaded.meta.arch} with opset {req.opset}" + (", dynamic axes" if req.dynamic else ""))
    base = export_onnx(model, loaded.meta, req.out, **kwargs)
    if qat:
        base.notes.append("QAT checkpoint: the fp32 graph holds its weights (BatchNorm folded), fake quantisation off")
    report.artifacts.append(_checked(base, model, images, "cpu"))
    if not report.artifacts[0].ok:
        return report
    if req.fp16:
        path = req.out.with_name(f"{req.out.stem}.fp16.onnx")
        fp16 = export_fp16(model, base, path, device=device, **kwargs)
        report.artifacts.append(_checked(fp16, model, images, device))
    if req.int8 and qat:
        artifact, report.int8 = _int8_qat(base, loaded, req, images, log)
        report.artifacts.append(artifact)
    elif calib is not None:
        artifact, report.int8 = _int8(base, loaded, req, calib, log)
        report.artifacts.append(artifact)
    return report


def _checked(export: OnnxExport, model: torch.nn.Module, images: list[np.ndarray], device: torch.device | str,
             min_agreement: float | None = None, n_images: int | None = None) -> Artifact:
    """Verify one export (on `n_images` real images, default the precision's); rename it `.unverified` when it
    fails."""
    meta = export.meta
    pre = meta.preprocess()
    real = [pre(im)[0] for im in images[: n_images or PARITY_IMAGES[meta.precision]]]
    inputs = parity_inputs(real, tuple(meta.input_size), meta.dynamic, getattr(model, "size_divisor", 1),
                           meta.precision, mean=tuple(meta.mean), std=tuple(meta.std))
    parity = verify_onnx(OnnxModel(export.path, device), model, inputs, meta.precision, min_agreement)
    artifact = Artifact(f"ONNX {meta.precision}", export.path, parity.passed, export.seconds, parity,
                        list(export.notes))
    if not parity.passed:
        artifact.path = export.path.replace(export.path.with_name(export.path.name + ".unverified"))
        record_output(artifact.path)
    return artifact


def _calibration(loaded: LoadedModel, req: ExportRequest) -> list[np.ndarray]:
    if req.calib is None:
        raise DataError("--int8 needs --calib DATA (a dataset folder whose val split calibrates the int8 ranges)")
    return calibration_images(req.calib, loaded.config["data"])


def _real_images(loaded: LoadedModel, req: ExportRequest, n: int) -> list[np.ndarray]:
    """Up to `n` dataset images for the parity check: --calib, else the config's data.root, else synthetic."""
    for root in _val_roots(loaded, req):
        try:
            return calibration_images(root, loaded.config["data"], n)
        except DataError:
            continue
    h, w = req.imgsz or loaded.meta.input_size
    return [synthetic_image(int(h * 1.25), int(w * 1.5), seed=i) for i in range(n)]


def _val_roots(loaded: LoadedModel, req: ExportRequest) -> list[Path]:
    """Dataset folders that may hold the val split: --calib, then the config's data.root (existing ones)."""
    return [Path(r) for r in (req.calib, loaded.config["data"].get("root")) if r and Path(r).is_dir()]


def pick_int8(miou_fp32: float, tried: dict[str, tuple[float, float]], max_drop: float = MAX_INT8_DROP) -> str:
    """The fastest op set whose val mIoU is within `max_drop` points of fp32, else the most accurate one.

    `tried`: op set -> (val mIoU 0..1, latency ms).
    """
    close = [name for name, (miou, _) in tried.items() if 100.0 * (miou_fp32 - miou) <= max_drop]
    if not close:
        return max(tried, key=lambda name: tried[name][0])
    return min(close, key=lambda name: tried[name][1])


def _int8(base: OnnxExport, loaded: LoadedModel, req: ExportRequest, calib: list[np.ndarray],
          log: Callable[[str], None]) -> tuple[Artifact, Int8Report | None]:
    """Build, verify and score each requested op set in a scratch folder; move the kept one to
    `<stem>.int8.onnx` (or the first one, failed, to `<stem>.int8.onnx.unverified`)."""
    path = req.out.with_name(f"{req.out.stem}.int8.onnx")
    names = list(INT8_OP_SETS) if req.int8_ops == "auto" else [req.int8_ops]
    log(f"int8: calibrating on {len(calib)} images of {req.calib}, op set {' and '.join(names)}")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".segkd-int8-") as tmp:
        built = {}
        for name in names:
            export = quantize_int8(base.path, Path(tmp) / f"{name}.onnx", base.meta, calib, batch=1,
                                   op_types=INT8_OP_SETS[name])
            built[name] = _checked(export, loaded.model, calib, "cpu")
        verified = [name for name in names if built[name].ok]
        if not verified:
            failed = built[names[0]]
            failed.path = failed.path.replace(path.with_name(path.name + ".unverified"))
            record_output(failed.path)
            return failed, None
        log("int8: scoring fp32 and int8 on the val split")
        scorer = ValScorer(base, loaded, req, req.calib)
        tried = scorer.score({"fp32": base.path, **{name: built[name].path for name in verified}})
        miou_fp32, ms_fp32 = tried.pop("fp32")
        kept = pick_int8(miou_fp32, tried)
        artifact = built[kept]
        artifact.path = artifact.path.replace(path)
        record_output(path)
    if len(tried) > 1:
        artifact.notes.append("op set (auto): " + " · ".join(
            f"{name} {100 * miou:.2f} mIoU {ms:.1f} ms" for name, (miou, ms) in tried.items()) + f" → kept {kept}")
    return artifact, Int8Report(miou_fp32, tried[kept][0], ms_fp32, tried[kept][1], len(scorer.dataset), len(calib),
                                kept, tried)


def _int8_qat(base: OnnxExport, loaded: LoadedModel, req: ExportRequest, images: list[np.ndarray],
              log: Callable[[str], None]) -> tuple[Artifact, Int8Report | None]:
    """The fake-quantised model traced to `<stem>.int8.onnx`, verified against it, scored on the val split (when
    --calib or the config's data.root has one)."""
    path = req.out.with_name(f"{req.out.stem}.int8.onnx")
    log("int8: tracing the fake-quantised model with its learned scales (QAT checkpoint, no calibration)")
    export = export_qat_int8(loaded.model, loaded.meta, path, imgsz=req.imgsz, dynamic=req.dynamic, opset=req.opset,
                             argmax=req.argmax)
    artifact = _checked(export, loaded.model, images, "cpu", QAT_MIN_AGREEMENT, QAT_PARITY_IMAGES)
    roots = _val_roots(loaded, req)
    if not artifact.ok or not roots:
        if artifact.ok:
            artifact.notes.append("no val data (--calib DATA or the config's data.root): val mIoU not scored")
        return artifact, None
    log("int8: scoring fp32 and int8 on the val split")
    scorer = ValScorer(base, loaded, req, roots[0])
    scores = scorer.score({"fp32": base.path, "int8": artifact.path})
    (miou_fp32, ms_fp32), (miou_int8, ms_int8) = scores["fp32"], scores["int8"]
    op_set = loaded.model.qat_spec.op_set
    return artifact, Int8Report(miou_fp32, miou_int8, ms_fp32, ms_int8, len(scorer.dataset), 0, op_set,
                                {op_set: scores["int8"]}, qat=True)


class ValScorer:
    """Val mIoU and batch-1 latency of ONNX files on ONNX Runtime (CPU)."""

    def __init__(self, fp32: OnnxExport, loaded: LoadedModel, req: ExportRequest, root: Path):
        self.data_cfg = dict(loaded.config["data"], input_size=list(fp32.meta.input_size))
        self.dataset = open_dataset(root, self.data_cfg.get("val_split", "val"),
                                    format=self.data_cfg.get("format", "auto"), num_classes=fp32.meta.num_classes,
                                    ignore_index=self.data_cfg["ignore_index"])
        self.absent = (loaded.config.get("eval") or {}).get("absent", "nan")
        self.threads = req.threads
        self.x = np.stack([fp32.meta.preprocess()(synthetic_image(*fp32.meta.input_size))[0]])

    def score(self, paths: dict[str, Path]) -> dict[str, tuple[float, float]]:
        """name -> (val mIoU, median batch-1 ms) of each file: one session per file serves both; the latencies
        are timed in interleaved rounds so that load from other processes hits every file alike."""
        models = {name: OnnxModel(path, "cpu", self.threads) for name, path in paths.items()}
        mious = {name: float(evaluate_model(OnnxModule(model), self.dataset, self.data_cfg, device=torch.device("cpu"),
                                            batch_size=1, absent=self.absent, progress=False).mIoU)
                 for name, model in models.items()}
        calls = {name: functools.partial(model, self.x) for name, model in models.items()}
        timings = measure_interleaved(calls, Protocol(warmup=5, iters=50, min_time=1.0))
        return {name: (mious[name], timings[name].median) for name in paths}
