"""PyTorch model -> ONNX: trace, simplify (onnxsim), exact graph rewrites, embed `DeployMeta` as metadata_props.

The graph has one input `images` (B×3×H×W, normalised as the metadata says) and one output: `logits`
(B×K×H×W) or, with `argmax=True`, `labels` (B×H×W int64).

Labels: with `argmax=True` the graph is the model's `predict_labels(x) -> B×H×W`, the contract's one label
path (ArgMax over K by default; a family's own, e.g. PP-MobileSeg's VIM, when it overrides the method).

Exporter: torch 2.15 defaults to the dynamo exporter, which needs `onnxscript` (not a segkd dependency), so
segkd uses the TorchScript exporter (`dynamo=False`); its tracer warnings are silenced.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from segkd.deploy.graph_passes import spatial_mean_to_global_pool, swap_resize_pointwise
from segkd.deploy.shape_folding import fold_shape_arithmetic
from segkd.deploy.meta import DeployMeta
from segkd.errors import ConfigError, JobFailed, SegkdError, first_line
from segkd.outputs import atomic_path, disk_error, make_dirs, temp_path

INPUT_NAME = "images"


class ExportHead(nn.Module):
    """What the graph computes: the model's logits, or its labels (`model.predict_labels`, the contract's one
    label path; argmax of the logits for a bare module without it)."""

    def __init__(self, model: nn.Module, argmax: bool = False):
        super().__init__()
        self.model = model
        self.argmax = argmax

    def forward(self, x: Tensor) -> Tensor:  # B×3×H×W
        if not self.argmax:
            return self.model(x)  # B×K×H×W logits
        hook = getattr(self.model, "predict_labels", None)
        if callable(hook):
            return hook(x)  # B×H×W labels
        return self.model(x).argmax(1)  # B×H×W int64


@dataclass
class OnnxExport:
    path: Path
    meta: DeployMeta
    seconds: float
    notes: list[str] = field(default_factory=list)  # what the user should know (dynamic axes refused, ...)


def resolve_size(model: nn.Module, imgsz: tuple[int, int] | None, meta: DeployMeta) -> tuple[int, int]:
    """The export resolution: `imgsz`, else the config's input size; a fixed-size model allows only its own."""
    hw = tuple(imgsz) if imgsz else tuple(meta.input_size)
    fixed = getattr(model, "fixed_input_size", None)
    if fixed is not None and hw != tuple(fixed):
        raise ConfigError(
            f"--imgsz {hw[0]}×{hw[1]}: {meta.arch} only runs at {fixed[0]}×{fixed[1]} (fixed-size backbone)"
        )
    d = getattr(model, "size_divisor", 1)
    if hw[0] % d or hw[1] % d:
        raise ConfigError(f"--imgsz {hw[0]}×{hw[1]}: {meta.arch} needs sides that are multiples of {d}")
    return hw


def dynamic_axes_for(model: nn.Module, dynamic: bool, argmax: bool, meta: DeployMeta) -> tuple[dict, list[str], list[str]]:
    """ONNX dynamic_axes, the axis names that are dynamic, and notes (fixed-size models keep H/W static)."""
    if not dynamic:
        return {}, [], []
    notes, names = [], ["batch", "height", "width"]
    if getattr(model, "fixed_input_size", None) is not None:
        h, w = model.fixed_input_size
        notes.append(f"dynamic height/width impossible: {meta.arch} only runs at {h}×{w}; batch stays dynamic")
        names = ["batch"]
    elif getattr(model, "static_graph_reason", None):
        notes.append(f"dynamic height/width impossible: {model.static_graph_reason}; batch stays dynamic")
        names = ["batch"]
    axes_in = {0: "batch", 2: "height", 3: "width"}
    axes_out = {0: "batch", 1: "height", 2: "width"} if argmax else {0: "batch", 2: "height", 3: "width"}
    keep = set(names)
    return ({INPUT_NAME: {k: v for k, v in axes_in.items() if v in keep},
             output_name(argmax): {k: v for k, v in axes_out.items() if v in keep}}, names, notes)


def output_name(argmax: bool) -> str:
    return "labels" if argmax else "logits"


def export_onnx(
    model: nn.Module,
    meta: DeployMeta,
    path: str | Path,
    *,
    imgsz: tuple[int, int] | None = None,
    dynamic: bool = False,
    opset: int = 17,
    argmax: bool = False,
    simplify: bool = True,
    half: bool = False,
    device: str | torch.device = "cpu",
    batch: int = 1,
) -> OnnxExport:
    """Export `model` (eval mode) to `path`; `half=True` traces a half-precision copy (CUDA only).

    `batch` is the traced batch size (the graph's batch when not `dynamic`).
    """
    start = time.perf_counter()
    path = Path(path)
    hw = resolve_size(model, imgsz, meta)
    axes, dyn_names, notes = dynamic_axes_for(model, dynamic, argmax, meta)
    dtype = torch.float16 if half else torch.float32
    if half or torch.device(device).type != "cpu":
        model = copy.deepcopy(model)  # never cast or move the caller's model
    head = ExportHead(model, argmax).eval().to(device=device, dtype=dtype)
    dummy = torch.randn(batch, 3, *hw, device=device, dtype=dtype)
    traced = temp_path(make_dirs(path.parent) / path.name)  # the exporter's raw graph; the final file comes last
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                head, (dummy,), str(traced), dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[output_name(argmax)], dynamic_axes=axes or None, do_constant_folding=True,
            )
        proto = onnx.load(str(traced))
    except SegkdError:
        raise
    except Exception as e:  # noqa: BLE001  (an op the exporter cannot convert: name it, no traceback)
        if isinstance(e, OSError) or "No space left" in str(e):
            raise disk_error(path, e) from None
        raise JobFailed(f"{meta.arch}: ONNX export failed ({first_line(e)})") from None
    finally:
        with contextlib.suppress(OSError):  # a read-only folder refuses even this
            traced.unlink(missing_ok=True)
    if simplify:
        proto, note = simplify_graph(proto, dummy.cpu().numpy())
        notes += [note] if note else []
    fold_shape_arithmetic(proto)  # a no-op after onnxsim; without it (QAT), static Resize sizes for the swap
    swap_resize_pointwise(proto)
    spatial_mean_to_global_pool(proto)
    precision = "fp16" if half else "fp32"
    meta = meta.replace(input_size=list(hw), output=output_name(argmax), precision=precision, dynamic=dyn_names)
    save_with_meta(proto, meta, path)
    return OnnxExport(path, meta, time.perf_counter() - start, notes)


def simplify_graph(proto: onnx.ModelProto, sample: np.ndarray | None = None) -> tuple[onnx.ModelProto, str]:
    """onnxsim (constant folding, shape inference, redundant-node removal), checked on `sample`.

    The simplified graph is kept only if it runs on ONNX Runtime and gives the original's outputs for `sample`
    (onnxsim has been seen to break Swin's shifted-window masks); otherwise the original graph is kept and the
    note says why. onnxsim's `fuse_preceding_mul_into_conv` is skipped: it folds GELU's trailing `× 0.5` into
    the next conv, which hides the GELU pattern from ONNX Runtime's Gelu fusion (measured: FastSegFormer-E
    lost its 35 fused Gelu kernels and ran slower than the unsimplified graph).
    """
    import onnxsim  # noqa: PLC0415  (lazy: onnxsim's native library adds ~0.5 s to every CLI start)

    try:
        with warnings.catch_warnings(), silence_native_output(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            simplified, ok = onnxsim.simplify(proto, skipped_optimizers=["fuse_preceding_mul_into_conv"])
    except Exception as e:  # noqa: BLE001
        return proto, f"onnxsim failed, graph kept unsimplified ({first_line(e)})"
    if not ok:
        return proto, "onnxsim could not validate the simplified graph; kept the original"
    problem = _output_change(proto, simplified, sample) if sample is not None else ""
    if problem:
        return proto, f"onnxsim changed the graph's outputs ({problem}); kept the unsimplified graph"
    return simplified, ""


def _output_change(original: onnx.ModelProto, simplified: onnx.ModelProto, x: np.ndarray) -> str:
    """Why `simplified` does not reproduce `original` on `x` ("" when it does, or when neither can be run)."""
    def run(proto: onnx.ModelProto) -> np.ndarray:
        options = ort.SessionOptions()
        options.log_severity_level = 4  # a failing graph is reported in the note, not as ORT log lines
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return session.run(None, {INPUT_NAME: x})[0]

    try:
        ref = run(original).astype(np.float32)
    except Exception:  # noqa: BLE001  (the original does not run here either: nothing to compare with)
        return ""
    try:
        got = run(simplified).astype(np.float32)
    except Exception as e:  # noqa: BLE001
        return f"it fails on ONNX Runtime: {first_line(e, 120)}"
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    if got.shape != ref.shape or float(np.abs(got - ref).max()) > tol:
        return "its outputs differ"
    return ""


@contextlib.contextmanager
def silence_native_output():
    """onnxsim's C++ code prints warnings straight to the process's stdout/stderr: send them to /dev/null."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def save_with_meta(proto: onnx.ModelProto, meta: DeployMeta, path: str | Path) -> None:
    """Write `proto` with `meta` as metadata_props (replacing any previous segkd keys)."""
    props = meta.to_props()
    kept = [p for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "segkd"
    proto.producer_version = meta.segkd_version
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))


def read_meta(path: str | Path) -> DeployMeta | None:
    """The `DeployMeta` stored in an ONNX file (None for a file segkd did not export)."""
    proto = onnx.load(str(path), load_external_data=False)
    return DeployMeta.from_props({p.key: p.value for p in proto.metadata_props})
