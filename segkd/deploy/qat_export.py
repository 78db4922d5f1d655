"""A quantisation-aware (QAT) checkpoint to ONNX: its fp32 twin and its int8 QDQ graph, with the learned scales.

- fp32: the same model with every fake quantiser off (BatchNorm stays folded: the trained weights).
- int8: the fake-quantised model traced as it is. Each quantiser becomes a QuantizeLinear/DequantizeLinear pair
  holding its learned scale and zero point (no calibration, so `--calib` is optional), then `qdq_passes` store
  the weights in int8 and the conv biases in int32 so that ONNX Runtime fuses every `DQ -> Conv -> Q` into
  QLinearConv, as in the graphs `onnxruntime.quantization` writes, and `fuse_gelu` keeps GELU one fp32 kernel
  (as post-training int8 does). The int8 graph computes the fake-quantised forward: its labels are checked
  against the fake-quantised PyTorch model's (`QAT_MIN_AGREEMENT`).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import onnx
from torch import nn

from segkd.deploy.export import OnnxExport, export_onnx, save_with_meta
from segkd.deploy.graph_passes import fuse_gelu
from segkd.deploy.meta import DeployMeta
from segkd.deploy.qdq_passes import drop_dead_nodes, fold_weight_quantize, quantize_conv_bias
from segkd.quant import bake_weights, set_fake_quant

QAT_MIN_AGREEMENT = 99.5  # % of pixels whose ONNX Runtime int8 label equals the fake-quantised PyTorch label
MIN_QDQ_OPSET = 13  # per-channel QuantizeLinear


def float_twin(model: nn.Module) -> nn.Module:
    """A copy of a QAT model with its fake quantisers off (BatchNorm folded, weights as trained)."""
    twin = copy.deepcopy(model)
    set_fake_quant(twin, enabled=False)
    return twin


def export_qat_int8(model: nn.Module, meta: DeployMeta, path: str | Path, *, imgsz: tuple[int, int] | None = None,
                    dynamic: bool = False, opset: int = 17, argmax: bool = False) -> OnnxExport:
    """Trace the fake-quantised `model` to a QDQ int8 graph at `path` (onnxsim is skipped: it would fold the
    DequantizeLinear of every weight back into fp32)."""
    start = time.perf_counter()
    spec = model.qat_spec
    model = copy.deepcopy(model)
    bake_weights(model)  # on-grid weights: a 7-bit range survives the 8-bit QuantizeLinear
    exported = export_onnx(model, meta, path, imgsz=imgsz, dynamic=dynamic, opset=max(opset, MIN_QDQ_OPSET),
                           argmax=argmax, simplify=False)
    proto = onnx.load(str(path))
    weights = fold_weight_quantize(proto)
    biases = quantize_conv_bias(proto)
    drop_dead_nodes(proto)
    proto = fuse_gelu(proto)
    meta = exported.meta.replace(precision="int8")
    save_with_meta(proto, meta, path)
    opset_used = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    note = (f"int8 with the scales learned in QAT (no calibration): {len(spec.quantized)} convs in int8 "
            f"({weights} int8 weights, {biases} int32 biases), the logits' conv fp32; opset {opset_used}")
    return OnnxExport(Path(path), meta, time.perf_counter() - start, exported.notes + [note])
