"""Half-precision ONNX: traced in half on CUDA, or the fp32 graph converted with onnx tooling on the CPU.

- CUDA: the model is copied, cast with `.half()` and exported; the graph's input and output are float16.
- CPU (half cannot be traced there): `onnxruntime.transformers.float16.convert_float_to_float16` rewrites the
  fp32 graph's weights and ops to float16 with `keep_io_types=True` (float32 input and output, Cast nodes
  inside). `onnxconverter-common` is not needed. ONNX Runtime's CPU provider runs fp16 nodes it has no kernel
  for by casting around them, so a CPU fp16 graph is about portability and size (half the MB), not CPU speed.
"""

from __future__ import annotations

import time
from pathlib import Path

import onnx
import torch
from onnxruntime.transformers.float16 import convert_float_to_float16
from torch import nn

from segkd.deploy.export import OnnxExport, export_onnx, save_with_meta


def export_fp16(model: nn.Module, fp32: OnnxExport, path: str | Path, *, device: str | torch.device = "cpu",
                **export_kwargs) -> OnnxExport:
    """An fp16 export next to the fp32 one: traced in half on CUDA, else converted from `fp32.path`."""
    if torch.device(device).type == "cuda":
        return export_onnx(model, fp32.meta, path, half=True, device=device, **export_kwargs)
    return convert_fp16(fp32, path)


def convert_fp16(fp32: OnnxExport, path: str | Path) -> OnnxExport:
    """Rewrite an fp32 graph in float16 (float32 I/O kept)."""
    start = time.perf_counter()
    proto = convert_float_to_float16(onnx.load(str(fp32.path)), keep_io_types=True)
    meta = fp32.meta.replace(precision="fp16")
    save_with_meta(proto, meta, path)
    note = "fp16 graph converted on the CPU (float32 input/output kept)"
    return OnnxExport(Path(path), meta, time.perf_counter() - start, [note])
