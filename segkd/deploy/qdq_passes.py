"""Rewrites of a QDQ graph traced from a fake-quantised model, so that ONNX Runtime runs it as int8 kernels.

The exporter writes each fake-quantised weight as `QuantizeLinear(fp32 weight) -> DequantizeLinear -> Conv`
and leaves the conv's bias fp32. ONNX Runtime fuses `DQ(x) -> Conv(DQ(w), DQ(b)) -> Q` into QLinearConv only
when every input comes from a DequantizeLinear, the bias as int32 (scale = input scale × weight scale, zero
point 0), which is the layout `onnxruntime.quantization` writes:

- `fold_weight_quantize`: a QuantizeLinear of a constant becomes its int8 initializer (the weight is stored
  in int8: the file is ~4× smaller), rounding half to even as QuantizeLinear does.
- `quantize_conv_bias`: a Conv whose input and weight come from DequantizeLinear gets its fp32 bias as
  `DequantizeLinear(int32)`. Rounding moves each bias by at most half of input scale × weight scale, far
  below one step of the conv's uint8 output. A channel whose weights are all ~0 has a weight scale near 0, at
  which int32 cannot hold its bias: that channel's weight scale is widened until it can (per-channel weights;
  the channel's weights, each below 127 × the old scale, move by at most that much) and the conv stays int8.
  With one weight scale for the whole tensor the conv is left fp32 on its dequantized weights instead.
Constants are followed through the exporter's `Identity` (shared initializers) and `Cast` (zero points) nodes;
`drop_dead_nodes` then removes what no longer feeds the outputs.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from segkd.deploy.graph_passes import constant_values, node_attribute
from segkd.quant.fake_quant import INT32_BIAS_MAX, bias_grid



def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and Constant outputs, plus what Identity and Cast nodes make of them."""
    values = constant_values(graph)
    for node in graph.node:  # topological order: a chain resolves in one pass
        if node.input and node.input[0] in values and node.op_type in ("Identity", "Cast"):
            value = values[node.input[0]]
            if node.op_type == "Cast":
                value = value.astype(onnx.helper.tensor_dtype_to_np_dtype(node_attribute(node, "to")))
            values[node.output[0]] = value
    return values


def drop_dead_nodes(model: onnx.ModelProto) -> None:
    """Remove nodes whose outputs nothing reads, and initializers nothing reads."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        dead = [node for node in graph.node if not any(o in read for o in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {name for node in graph.node for name in node.input} | outputs
    for init in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(init)


def fold_weight_quantize(model: onnx.ModelProto) -> int:
    """Replace every QuantizeLinear of constants by its integer initializer; returns how many."""
    graph = model.graph
    consts = _constants(graph)
    folded = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or not all(name in consts for name in node.input):
            continue
        w, scale, zp = (consts[name] for name in node.input)
        shape = _scale_shape(node, scale, w.ndim)
        info = np.iinfo(zp.dtype)
        q = np.rint(w / scale.reshape(shape)) + zp.reshape(shape).astype(np.float64)
        graph.initializer.append(numpy_helper.from_array(np.clip(q, info.min, info.max).astype(zp.dtype),
                                                         node.output[0]))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    return len(folded)


def quantize_conv_bias(model: onnx.ModelProto) -> int:
    """Give every Conv fed by DequantizeLinear input and weight an int32 DequantizeLinear bias; returns how many."""
    graph = model.graph
    consts = _constants(graph)
    dq = {node.output[0]: node for node in graph.node if node.op_type == "DequantizeLinear"}
    added = []
    for conv in graph.node:
        if conv.op_type != "Conv" or len(conv.input) < 3 or conv.input[2] not in consts:
            continue
        x_dq, w_dq = dq.get(conv.input[0]), dq.get(conv.input[1])
        if x_dq is None or w_dq is None or conv.input[2] in dq:
            continue
        bias, x_scale = consts[conv.input[2]].astype(np.float64), consts[x_dq.input[1]].astype(np.float64)
        q, scale = _int32_bias(bias, x_scale, consts[w_dq.input[1]])
        if np.abs(q).max(initial=0) > INT32_BIAS_MAX:  # a dead channel (weight scale ~0) with a bias
            if consts[w_dq.input[1]].ndim == 0:
                _dequantize_weight(graph, conv, w_dq, consts)  # one scale for all: this conv runs fp32
                continue
            _widen_weight_scale(graph, w_dq, consts, np.abs(bias) / (x_scale * INT32_BIAS_MAX))
            q, scale = _int32_bias(bias, x_scale, consts[w_dq.input[1]])
        q = q.astype(np.int32)
        name = conv.input[2] + "_int32"
        graph.initializer.extend([numpy_helper.from_array(q, name),
                                  numpy_helper.from_array(scale, name + "_scale"),
                                  numpy_helper.from_array(np.zeros_like(q), name + "_zero_point")])
        added.append(onnx.helper.make_node("DequantizeLinear", [name, name + "_scale", name + "_zero_point"],
                                           [name + "_dequantized"], name=name + "_DequantizeLinear", axis=0))
        conv.input[2] = name + "_dequantized"
    for i, node in enumerate(added):  # constant inputs only: first in topological order
        graph.node.insert(i, node)
    return len(added)


def _int32_bias(bias: np.ndarray, x_scale: np.ndarray, w_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q, its float32 scale, C_out or 1): `segkd.quant.bias_grid`, the arithmetic the QAT forward adds."""
    q, step = bias_grid(*(torch.tensor(a) for a in (bias, x_scale, w_scale)))  # C_out-long copies
    return q.numpy(), step.numpy().reshape(-1)


def _scale_shape(node: onnx.NodeProto, scale: np.ndarray, ndim: int) -> list[int]:
    """The shape that broadcasts a (De)QuantizeLinear's scale over its ndim-D input: per channel along `axis`."""
    shape = [1] * ndim
    if scale.ndim:
        shape[node_attribute(node, "axis", 1) % ndim] = -1
    return shape


def _widen_weight_scale(graph: onnx.GraphProto, w_dq: onnx.NodeProto, consts: dict[str, np.ndarray],
                        floor: np.ndarray) -> None:
    """Raise `w_dq`'s per-channel weight scales to at least `floor` and requantize those channels' int8 weights
    (new initializers: the old ones may be shared)."""
    w, scale, zp = (consts[name] for name in w_dq.input)
    shape = _scale_shape(w_dq, scale, w.ndim)
    wider = np.maximum(scale, floor.astype(np.float32).reshape(scale.shape)).astype(np.float32)
    real = (w.astype(np.float64) - zp.reshape(shape)) * scale.reshape(shape)
    info = np.iinfo(w.dtype)
    q = np.clip(np.rint(real / wider.reshape(shape)) + zp.reshape(shape), info.min, info.max).astype(w.dtype)
    for i, (suffix, value) in enumerate([("_widened", q), ("_widened_scale", wider)]):
        name = w_dq.input[0] + suffix
        graph.initializer.append(numpy_helper.from_array(value, name))
        consts[name] = value
        w_dq.input[i] = name


def _dequantize_weight(graph: onnx.GraphProto, conv: onnx.NodeProto, w_dq: onnx.NodeProto,
                       consts: dict[str, np.ndarray]) -> None:
    """Give `conv` its weight as the fp32 values its DequantizeLinear computes (no QDQ pattern left to fuse)."""
    w, scale, zp = (consts[name] for name in w_dq.input)
    shape = _scale_shape(w_dq, scale, w.ndim)
    value = ((w.astype(np.float32) - zp.reshape(shape).astype(np.float32)) * scale.reshape(shape)).astype(np.float32)
    name = conv.input[1] + "_fp32"
    graph.initializer.append(numpy_helper.from_array(value, name))
    conv.input[1] = name
