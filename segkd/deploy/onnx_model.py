"""An ONNX Runtime model that knows how to be used: class names, palette, input size and normalisation come from
the file's segkd metadata (see `segkd.deploy.meta`).

`OnnxModel(path)(batch)` maps a B×3×H×W float32 array to logits (B×K×H×W) or labels (B×H×W). Graphs with a
fixed batch are fed in slices of that batch (the last one padded); fp16 graphs get their input cast. `OnnxModule` wraps it as an `nn.Module` so the
evaluator (and anything else written for PyTorch models) can score an ONNX file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segkd.deploy.meta import DeployMeta
from segkd.errors import WeightsError, first_line

CUDA_EP = "CUDAExecutionProvider"


def providers_for(device: str | torch.device) -> list[str]:
    """CUDA EP first when the device is CUDA and onnxruntime has it, CPU otherwise (and as the fallback)."""
    if str(device).startswith("cuda") and CUDA_EP in ort.get_available_providers():
        return [CUDA_EP, "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(threads: int | None = None, optimized_path: str | Path | None = None) -> ort.SessionOptions:
    """All graph optimisations (constant folding, Conv+BN/Add/Act fusion, GELU/LayerNorm fusion, NCHWc layout),
    sequential execution, denormals flushed to zero, `threads` intra-op threads; `optimized_path` saves the
    optimised graph."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.set_denormal_as_zero", "1")
    so.log_severity_level = 4  # failures surface as exceptions with their message
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return so


class OnnxModel:
    """An inference session plus the metadata that says how to feed it and read it."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", threads: int | None = None,
                 options: ort.SessionOptions | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise WeightsError(f"{self.path}: ONNX file not found")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options or session_options(threads),
                                                providers=providers_for(device))
        except Exception as e:  # noqa: BLE001  (corrupt file, unsupported op: name the file)
            raise WeightsError(f"{self.path}: not a loadable ONNX model ({first_line(e)})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = np.float16 if "float16" in inp.type else np.float32
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        props = self.session.get_modelmeta().custom_metadata_map
        meta = DeployMeta.from_props(props)
        self.foreign = meta is None  # not exported by segkd: only a checked image -> per-pixel graph runs
        self.meta = meta or self._fallback_meta(self.session.get_inputs(), self.session.get_outputs())
        self.output = self.meta.output

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    @property
    def params(self) -> int:
        """Number of weight elements (initializers) in the graph."""
        graph = onnx.load(str(self.path), load_external_data=False).graph
        return sum(int(np.prod(t.dims)) for t in graph.initializer)

    def _fallback_meta(self, inputs: list, outputs: list) -> DeployMeta:
        """A file segkd did not export: run it only if it maps one B×3×H×W image tensor to B×K×h×w class scores or
        B×h×w labels; generic class names, ImageNet normalisation (unless the caller gives its own)."""
        where = f"{self.path}: no segkd metadata and"
        if len(inputs) != 1:
            raise WeightsError(f"{where} {len(inputs)} inputs; segkd runs graphs with one image input")
        in_shape, out_shape = inputs[0].shape, outputs[0].shape
        if "float" not in inputs[0].type or len(in_shape) != 4 or (isinstance(in_shape[1], int) and in_shape[1] != 3):
            raise WeightsError(f"{where} its input '{inputs[0].name}' is {inputs[0].type} {in_shape}, "
                               "not one B×3×H×W float image tensor")
        hw = in_shape[2:4]
        if not all(isinstance(s, int) for s in hw):
            raise WeightsError(f"{where} a dynamic input size: cannot tell the input size")
        if len(out_shape) not in (3, 4) or (len(out_shape) == 4 and not isinstance(out_shape[1], int)):
            raise WeightsError(f"{where} its output '{outputs[0].name}' is {out_shape}: not per-pixel class scores "
                               "(B×K×H×W) or labels (B×H×W) -- a classifier or detector?")
        labels = len(out_shape) == 3
        k = 256 if labels else out_shape[1]
        if k < 2:
            raise WeightsError(f"{where} its output '{outputs[0].name}' has {k} channel(s): not class scores")
        meta = DeployMeta.fallback(k, (hw[0], hw[1]), self.path.stem)
        return meta.replace(output="labels" if labels else "logits")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """B×3×H×W float32 -> B×K×H×W logits (or B×H×W labels for a labels graph)."""
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        step = self.fixed_batch or len(x)
        outs = []
        for i in range(0, len(x), step):
            chunk = x[i : i + step]
            n = len(chunk)
            if n < step:  # a fixed-batch graph: pad the last chunk by repeating its last image
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            outs.append(self.session.run(None, {self.input_name: chunk})[0][:n])
        return outs[0] if len(outs) == 1 else np.concatenate(outs)


class OnnxModule(nn.Module):
    """`OnnxModel` behind the PyTorch model contract's `forward(x) -> B×K×H×W logits` (labels become one-hot)."""

    size_divisor = 1

    def __init__(self, onnx_model: OnnxModel):
        super().__init__()
        self.onnx = onnx_model
        dynamic_hw = "height" in onnx_model.meta.dynamic
        self.fixed_input_size = None if dynamic_hw else tuple(onnx_model.meta.input_size)
        self.arch = onnx_model.meta.arch

    def forward(self, x: Tensor) -> Tensor:
        out = torch.from_numpy(self.onnx(x.detach().float().cpu().numpy())).to(x.device)
        if self.onnx.output == "labels":  # B×H×W -> B×K×H×W one-hot scores
            return F.one_hot(out.long(), self.onnx.meta.num_classes).permute(0, 3, 1, 2).float()
        return out.float()
