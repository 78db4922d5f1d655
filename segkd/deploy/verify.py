"""Parity of an exported ONNX file with the PyTorch model it came from (onnxruntime vs fp32 PyTorch).

Every export is checked on a real image (a dataset image, else a synthetic natural-looking one) and on random
inputs (plus a second batch size and resolution when the graph is dynamic). Random inputs are random pixels
normalised as the model's own preprocessing does, so they stay in the range the model is trained for.
Criteria per precision, with the tolerance scaled by the logits' size (a trained model's logits reach tens,
and fp32 kernels that sum in another order differ by ~1e-6 relative per op):

| precision | max abs logit difference          | argmax agreement                    |
|-----------|-----------------------------------|-------------------------------------|
| fp32      | ≤ 1e-3 · max(1, max |logit|)      | ≥ 99.9 % of pixels                  |
| fp16      | ≤ 1e-2 · max(1, max |logit|)      | ≥ 99.9 % of decisive pixels (*)     |
| int8      | reported, not checked             | ≥ 95 % of pixels, real images only  |
| int8 QAT  | reported, not checked             | ≥ 99.5 % of pixels, real images (**)|

(*) fp16 keeps ~3 significant digits, so a pixel whose two best fp32 logits are closer than the tolerance may
flip; agreement is counted over the pixels whose top-2 margin exceeds it. Random inputs are out of distribution
for int8 calibration, so int8 is judged on real images only (and by the mIoU that `segkd export --int8` prints).
(**) A quantisation-aware checkpoint's int8 graph is compared with its fake-quantised PyTorch model, which
computes the same arithmetic (`segkd.deploy.qat_export`), on up to 16 val images.
A graph exported with `labels` output is judged by agreement alone, with the model's own `predict_labels`
(PP-MobileSeg's VIM is not the argmax of the full logits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from segkd.deploy.export import ExportHead
from segkd.deploy.onnx_model import OnnxModel
from segkd.errors import first_line

TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2, "int8": float("inf")}
MIN_AGREEMENT = {"fp32": 99.9, "fp16": 99.9, "int8": 95.0}


@dataclass
class ParityCase:
    name: str  # real image, random, random batch 2 at 256×320, ...
    shape: tuple[int, ...]
    max_abs: float | None  # None for a labels graph
    agreement: float  # % of pixels with the same argmax
    tolerance: float | None = None


@dataclass
class ParityReport:
    precision: str
    cases: list[ParityCase] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def max_abs(self) -> float | None:
        values = [c.max_abs for c in self.cases if c.max_abs is not None]
        return max(values) if values else None

    @property
    def agreement(self) -> float:
        return min(c.agreement for c in self.cases)

    def summary(self) -> str:
        diff = f"max |Δlogit| {self.max_abs:.2e}" if self.max_abs is not None else "labels output"
        return f"{diff}, argmax agreement {self.agreement:.3f}% over {len(self.cases)} inputs"


def synthetic_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A natural-looking H×W×3 uint8 RGB image: smooth colour gradients, a few blobs, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([90 + 80 * xx / w, 110 + 60 * yy / h, 70 + 40 * (xx + yy) / (h + w)], -1)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.08, 0.3) * min(h, w)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - blob) + rng.uniform(0, 255, 3) * blob
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def parity_inputs(
    real: list[np.ndarray], hw: tuple[int, int], dynamic: list[str], size_divisor: int, precision: str, seed: int = 0,
    mean: tuple[float, ...] = (0.0, 0.0, 0.0), std: tuple[float, ...] = (1.0, 1.0, 1.0),
) -> dict[str, np.ndarray]:
    """Named B×3×H×W float32 inputs: the preprocessed real images (one each), then random pixels in [0, 1]
    normalised with `mean` and `std`."""
    rng = np.random.default_rng(seed)
    mean_, std_ = np.float32(mean).reshape(1, 3, 1, 1), np.float32(std).reshape(1, 3, 1, 1)
    random = lambda *shape: (rng.random(shape, dtype=np.float32) - mean_) / std_  # noqa: E731
    inputs = {f"real image {i + 1}": x[None] for i, x in enumerate(real)}
    if precision == "int8":
        return inputs
    inputs["random"] = random(1, 3, *hw)
    if "batch" in dynamic:
        inputs["random, batch 2"] = random(2, 3, *hw)
    if "height" in dynamic:
        h2, w2 = hw[0] + 2 * size_divisor, hw[1] + 3 * size_divisor
        inputs[f"random at {h2}×{w2}"] = random(1, 3, h2, w2)
    return inputs


@torch.no_grad()
def verify_onnx(onnx_model: OnnxModel, model: nn.Module, inputs: dict[str, np.ndarray], precision: str,
                min_agreement: float | None = None) -> ParityReport:
    """Run every input through ONNX Runtime and fp32 PyTorch (CPU) and judge the differences (argmax agreement
    against `min_agreement` %, default the precision's: a QAT int8 graph is held to 99.5 %)."""
    need = MIN_AGREEMENT[precision] if min_agreement is None else min_agreement
    labels_graph = onnx_model.output == "labels"
    ref_model = ExportHead(model, argmax=labels_graph).eval().float().cpu()  # labels: the model's own path
    report = ParityReport(precision)
    for name, x in inputs.items():
        ref = ref_model(torch.from_numpy(x)).numpy()  # B×K×H×W fp32, or B×H×W labels
        try:
            got = onnx_model(x)
        except Exception as e:  # noqa: BLE001  (the graph does not run: a failed case, not a crash)
            report.cases.append(ParityCase(name, tuple(x.shape), float("inf"), 0.0))
            report.failures.append(f"{name}: ONNX Runtime failed ({first_line(e, 160)})")
            continue
        case = _compare(name, ref, got, labels_graph, precision)
        report.cases.append(case)
        if case.agreement < need:
            report.failures.append(f"{name}: argmax agreement {case.agreement:.3f}% < {need}%")
        if case.max_abs is not None and case.max_abs > case.tolerance:
            report.failures.append(f"{name}: max |Δlogit| {case.max_abs:.3g} > {case.tolerance:.3g}")
    return report


def _compare(name: str, ref: np.ndarray, got: np.ndarray, labels_graph: bool, precision: str) -> ParityCase:
    if labels_graph:  # ref: PyTorch's predict_labels
        agree = 100.0 * float((got.astype(np.int64) == ref).mean()) if got.shape == ref.shape else 0.0
        return ParityCase(name, tuple(ref.shape), None, agree)
    ref_labels = ref.argmax(1)
    got = got.astype(np.float32)
    if got.shape != ref.shape:
        return ParityCase(name, tuple(ref.shape), float("inf"), 0.0, TOLERANCE[precision])
    tol = TOLERANCE[precision] * max(1.0, float(np.abs(ref).max()))
    same = got.argmax(1) == ref_labels
    if precision == "fp16":  # only decisive pixels: top-2 margin above the tolerance
        top2 = np.sort(ref, axis=1)[:, -2:]
        same = same[(top2[:, 1] - top2[:, 0]) > tol]
    agree = 100.0 * float(same.mean()) if same.size else 100.0
    return ParityCase(name, tuple(ref.shape), float(np.abs(got - ref).max()), agree, tol)
