"""Post-training static int8 quantisation with ONNX Runtime (QDQ format, per-channel weights).

Recipe:
1. `graph_passes.fuse_gelu`: exact GELU becomes one ONNX `Gelu` node (the int8 graph is opset ≥ 20), so it
   stays a single fp32 kernel between int8 convs.
2. `quant_pre_process`: symbolic shape inference + ORT basic graph optimisation (Conv+BN folding, constants).
3. `quantize_static`, QDQ format, calibrated with MinMax on ~100 preprocessed images of the data's val split,
   with one of `INT8_OP_SETS`: `conv` puts only Conv and MatMul (where the arithmetic is) in int8 and keeps
   elementwise ops, norms, pooling, resize and softmax in fp32, which avoids Q/DQ pairs around every cheap op;
   `all` quantises every op type the quantiser supports, so chains of adds, resizes and attention stay int8.
   Which is faster depends on the model (FastSegFormer-P: conv; -E: all), so `segkd export` measures both.
   In either set the op that produces the logits (the final upsampling, or ArgMax's input) stays fp32: uint8
   logits have a step of range/255 (≈ 0.2 for logits in ±25), enough to flip the argmax of close pixels
   (FastSegFormer-E, all ops: 37.34 val mIoU fp32, 36.53 with int8 logits, 37.19 with fp32 logits).
Activations are uint8 (asymmetric), weights int8 per output channel (symmetric): the U8S8 pair that ORT's x86
kernels run fastest (VNNI on AVX-512 CPUs). The graph keeps fp32 input and output.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from segkd.data.dataset import open_dataset
from segkd.data.io import read_image
from segkd.data.transforms import Preprocess
from segkd.deploy.export import OnnxExport, save_with_meta, silence_native_output
from segkd.deploy.graph_passes import fuse_gelu
from segkd.deploy.meta import DeployMeta
from segkd.errors import DataError, JobFailed, first_line

CALIB_IMAGES = 100
INT8_OP_SETS: dict[str, tuple[str, ...] | None] = {"conv": ("Conv", "MatMul"), "all": None}  # None: every type


class ArrayReader(CalibrationDataReader):
    """Feeds preprocessed 3×H×W arrays to the calibrator, `batch` at a time (1 for a fixed-batch graph)."""

    def __init__(self, input_name: str, arrays: list[np.ndarray], batch: int = 1):
        self.batches = [np.stack(arrays[i : i + batch]) for i in range(0, len(arrays), batch)]
        self.input_name = input_name
        self.index = 0

    def get_next(self) -> dict | None:
        if self.index >= len(self.batches):
            return None
        self.index += 1
        return {self.input_name: self.batches[self.index - 1]}

    def rewind(self) -> None:
        self.index = 0


def calibration_images(root: str | Path, data_cfg: dict, n: int = CALIB_IMAGES, split: str | None = None) -> list[np.ndarray]:
    """Up to `n` RGB images (H×W×3 uint8) of the val split (train when the data has no val split)."""
    kwargs = dict(format=data_cfg.get("format", "auto"), num_classes=None, ignore_index=data_cfg["ignore_index"],
                  images=n)
    try:
        ds = open_dataset(root, split or data_cfg.get("val_split", "val"), **kwargs)
    except DataError:
        ds = open_dataset(root, data_cfg.get("train_split", "train"), **kwargs)
    if len(ds) == 0:
        raise DataError(f"{root}: no images in split '{ds.split}' to calibrate int8 with")
    return [read_image(s.image) for s in ds.samples]


def quantize_int8(src: str | Path, dst: str | Path, meta: DeployMeta, images: list[np.ndarray],
                  preprocess: Preprocess | None = None, batch: int = 1,
                  op_types: tuple[str, ...] | None = INT8_OP_SETS["conv"]) -> OnnxExport:
    """Quantise the fp32 ONNX file `src` into `dst`, calibrated on `images` (H×W×3 uint8 RGB).

    `op_types=None` quantises every op type the quantiser supports; the logits' own op stays fp32 either way.
    """
    start = time.perf_counter()
    pre = preprocess or meta.preprocess()
    arrays = [pre(im)[0] for im in images]  # 3×H×W float32 each
    dst = Path(dst)
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        fused, prepared = Path(tmp) / "fused.onnx", Path(tmp) / "prepared.onnx"
        try:
            onnx.save(fuse_gelu(onnx.load(str(src))), str(fused))
            quant_pre_process(str(fused), str(prepared))
            prepared_model = onnx.load(str(prepared))
            keep_fp32 = logits_nodes(prepared_model.graph)  # names the unnamed ones, hence the save
            onnx.save(prepared_model, str(prepared))
            quantize_static(
                str(prepared), str(dst), ArrayReader("images", arrays, batch), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(op_types) if op_types else None, nodes_to_exclude=keep_fp32,
                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        except Exception as e:  # noqa: BLE001  (an op the quantiser cannot handle: name the file)
            raise JobFailed(f"{src}: int8 quantisation failed ({first_line(e)})") from None
    meta = meta.replace(precision="int8")
    proto = onnx.load(str(dst))
    save_with_meta(proto, meta, dst)
    opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    ops = f"{'/'.join(op_types)} in int8, the rest fp32" if op_types else "every supported op in int8"
    note = f"int8 calibrated on {len(arrays)} images; {ops}; the logits' own op stays fp32; opset {opset}"
    return OnnxExport(dst, meta, time.perf_counter() - start, [note])


def logits_nodes(graph: onnx.GraphProto) -> list[str]:
    """Names of the nodes that produce the graph's outputs (through ArgMax to the node feeding it), naming the
    unnamed ones in place so that the quantiser can be told to leave them out."""
    producer = {out: node for node in graph.node for out in node.output}
    names = []
    for output in graph.output:
        node = producer.get(output.name)
        while node is not None:
            if not node.name:
                node.name = f"segkd:{node.output[0]}"  # tensor names are unique
            names.append(node.name)
            node = producer.get(node.input[0]) if node.op_type == "ArgMax" else None
    return names


@contextlib.contextmanager
def _quiet():
    """The quantiser logs and warns per node (Python logging, warnings, ORT's C++ log): keep the terminal clean."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), silence_native_output():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
