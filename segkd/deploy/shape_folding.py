"""Fold a static graph's shape arithmetic into constants, leaving every other constant subgraph alone.

The exporter writes `F.interpolate(x, size=...)` as `Resize(x, sizes=Concat(Slice(Shape(x)), [H, W]))`. onnxsim
folds that on the fp32 path, but a QAT graph is exported without onnxsim (it would also fold the
DequantizeLinear of every weight back into fp32), so its Resize sizes stayed computed and `swap_resize_pointwise`
could not move the logits conv in front of the final upsample. This pass folds only integer shape arithmetic:
`Shape` of a tensor whose shape inference gives every dim, then the nodes below whose inputs are all int64
constants, evaluated by ONNX's reference runtime.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from segkd.deploy.graph_passes import constant_values, inferred_dims, node_attribute

#: the ops of shape arithmetic; a node of these is folded when every input is an int64 constant
SHAPE_OPS = {"Slice", "Concat", "Gather", "Unsqueeze", "Squeeze", "Cast", "Add", "Sub", "Mul", "Div", "Floor",
             "Ceil", "Reshape", "Identity"}


def fold_shape_arithmetic(model: onnx.ModelProto) -> int:
    """Replace static `Shape` nodes and the int64 arithmetic on them by initializers; returns the nodes folded."""
    graph = model.graph
    dims = inferred_dims(model)
    consts = constant_values(graph)
    outputs = {o.name for o in graph.output}
    folded = []
    for node in graph.node:  # topological order: a node's constant inputs are known when it is reached
        if node.output[0] in outputs:
            continue
        value = None
        if node.op_type == "Shape":
            value = _static_shape(node, dims.get(node.input[0]))
        elif node.op_type in SHAPE_OPS and _all_int64(node, consts):
            value = ReferenceEvaluator(node).run(None, {n: consts[n] for n in node.input if n})[0]
        if value is None:
            continue
        consts[node.output[0]] = np.asarray(value)
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), node.output[0]))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    return len(folded)


def _static_shape(node: onnx.NodeProto, shape: tuple | None) -> np.ndarray | None:
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        return None
    start, end = node_attribute(node, "start", 0), node_attribute(node, "end", None)
    return np.array(shape[start:end], dtype=np.int64)


def _all_int64(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> bool:
    names = [n for n in node.input if n]
    return bool(names) and all(n in consts and consts[n].dtype == np.int64 for n in names)
