"""ONNX graph rewrites segkd applies after onnxsim; each one is exact in real arithmetic.

- `swap_resize_pointwise`: `Resize(x) -> Conv1×1` becomes `Conv1×1(x) -> Resize`. Interpolation (nearest,
  linear, cubic) is an affine combination of neighbouring pixels with weights that sum to one, and a 1×1 conv
  is the same affine map at every pixel, so the two commute. When the resize upsamples and the conv does not
  add channels, the conv then runs on the small map and the resize moves fewer channels: FastSegFormer's
  detail branch ends with `Upsample ×2 (32 ch) -> Conv1×1 (32 -> K)` at full resolution.
- `fuse_gelu`: the exporter's exact-GELU subgraph `Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5)` becomes one
  ONNX `Gelu` (opset ≥ 20; the graph is version-converted first). Used before int8 quantisation: left as five
  nodes, the quantiser would wrap each in Q/DQ pairs (or ONNX Runtime's per-consumer DQ copies would break its
  own Gelu fusion), and GELU would run as five slow kernels between the int8 convs.
- `spatial_mean_to_global_pool`: `ReduceMean(x, axes=[2, 3], keepdims=1)` on a 4-D tensor (a squeeze-excite
  block's squeeze: timm's MobileNetV3 and EfficientNet write `x.mean((2, 3), keepdim=True)`) becomes
  `GlobalAveragePool(x)`, the same mean. ONNX Runtime runs GlobalAveragePool in its blocked NCHWc layout and the
  quantiser has an int8 kernel for it (QLinearGlobalAveragePool), while ReduceMean between int8 convs was 17-19 %
  of MobileNetV3-Large's int8 time at 512×1024 (benchmarks/speed.py --profile).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.version_converter
from onnx import numpy_helper


def node_attribute(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node_attribute(node, "value") is not None:
            values[node.output[0]] = numpy_helper.to_array(node_attribute(node, "value"))
    return values


def _is_pointwise_conv(conv: onnx.NodeProto, consts: dict[str, np.ndarray]) -> bool:
    """A 1×1, stride-1, unpadded, ungrouped Conv with constant weights that does not add channels."""
    w = consts.get(conv.input[1]) if len(conv.input) > 1 else None
    if conv.op_type != "Conv" or w is None or w.ndim != 4 or w.shape[2:] != (1, 1) or w.shape[0] > w.shape[1]:
        return False
    if len(conv.input) > 2 and conv.input[2] and conv.input[2] not in consts:
        return False
    ones = lambda name: all(v == 1 for v in (node_attribute(conv, name) or []))  # noqa: E731
    return (node_attribute(conv, "group", 1) == 1 and ones("strides") and ones("dilations")
            and not any(node_attribute(conv, "pads") or [])
            and node_attribute(conv, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID"))


def _upsample_factor(resize: onnx.NodeProto, consts: dict[str, np.ndarray], in_hw: tuple | None) -> float | None:
    """Output area / input area when it is known and the batch and channel axes are untouched, else None."""
    mode = node_attribute(resize, "coordinate_transformation_mode", b"half_pixel")
    if mode == b"tf_crop_and_resize" or node_attribute(resize, "axes"):
        return None
    sizes = consts.get(resize.input[3]) if len(resize.input) > 3 and resize.input[3] else None
    scales = consts.get(resize.input[2]) if len(resize.input) > 2 and resize.input[2] else None
    if sizes is not None and sizes.size == 4 and in_hw and all(isinstance(v, int) and v > 0 for v in in_hw):
        return float(sizes[2] * sizes[3]) / (in_hw[0] * in_hw[1])
    if sizes is None and scales is not None and scales.size == 4 and scales[0] == 1 and scales[1] == 1:
        return float(scales[2] * scales[3])
    return None


def swap_resize_pointwise(model: onnx.ModelProto) -> int:
    """Apply the swap wherever it saves work; returns how many pairs were swapped."""
    graph = model.graph
    shapes = _spatial_shapes(model)
    consts = constant_values(graph)
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    outputs = {o.name for o in graph.output}
    swapped = 0
    for i, resize in enumerate(graph.node):
        if resize.op_type != "Resize" or resize.output[0] in outputs or len(consumers.get(resize.output[0], [])) != 1:
            continue
        j = consumers[resize.output[0]][0]
        conv = graph.node[j]
        factor = _upsample_factor(resize, consts, shapes.get(resize.input[0]))
        if j <= i or conv.input[0] != resize.output[0] or not _is_pointwise_conv(conv, consts) or not factor or factor <= 1:
            continue
        out_channels = consts[conv.input[1]].shape[0]
        low, high = f"{conv.output[0]}_before_resize", conv.output[0]
        conv.input[0], conv.output[0] = resize.input[0], low  # Conv on the small map
        old = resize.output[0]
        resize.input[0], resize.output[0] = low, high  # then resize its output
        if len(resize.input) > 3 and resize.input[3]:
            sizes = consts[resize.input[3]].copy()
            sizes[1] = out_channels
            resize.input[3] = _add_initializer(graph, f"{resize.input[3]}_{out_channels}ch", sizes)
        first, second = onnx.NodeProto(), onnx.NodeProto()
        first.CopyFrom(conv)
        second.CopyFrom(resize)
        graph.node[i].CopyFrom(first)  # the conv now runs where the resize did, the resize after it
        graph.node[j].CopyFrom(second)
        _drop_value_info(graph, {old, high})
        swapped += 1
    if swapped:
        _drop_unused_initializers(graph)
    return swapped


def _spatial_shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    """Tensor name -> (H, W) of every 4-D tensor (symbolic dims become strings)."""
    return {name: dims[2:] for name, dims in inferred_dims(model).items() if len(dims) == 4}


def inferred_dims(model: onnx.ModelProto) -> dict[str, tuple]:
    """Tensor name -> its dims from ONNX shape inference (empty when inference fails: no rewrite, the graph is
    still valid)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)  # Reshape targets from Shape arithmetic
    except Exception:  # noqa: BLE001
        return {}
    return {v.name: tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim)
            for v in [*inferred.graph.value_info, *inferred.graph.input] if v.type.tensor_type.HasField("shape")}


def _add_initializer(graph: onnx.GraphProto, name: str, value: np.ndarray) -> str:
    graph.initializer.append(numpy_helper.from_array(value, name))
    return name


GELU_OPSET = 20


def fuse_gelu(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` at opset ≥ 20 with every exact-GELU subgraph replaced by one `Gelu` node."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), GELU_OPSET)
    model = onnx.version_converter.convert_version(model, GELU_OPSET) if opset < GELU_OPSET else _copy(model)
    graph = model.graph
    consts = constant_values(graph)
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    drop, fused = set(), []
    for erf in [n for n in graph.node if n.op_type == "Erf"]:
        chain = _gelu_chain(erf, producer, consumers, consts)
        if chain is None:
            continue
        x, nodes = chain
        drop.update(id(n) for n in nodes)
        fused.append((nodes[-1], onnx.helper.make_node("Gelu", [x], [nodes[-1].output[0]], name=f"{erf.name}_gelu")))
    if fused:
        replace = {id(last): gelu for last, gelu in fused}
        kept = [replace.get(id(n), n) for n in graph.node if id(n) not in drop or id(n) in replace]
        del graph.node[:]
        graph.node.extend(kept)
        _drop_unused_initializers(graph)
    return model


def _gelu_chain(erf, producer, consumers, consts) -> tuple[str, list] | None:
    """(x, [Div, Erf, Add, Mul, Mul]) when `erf` sits in the exporter's GELU pattern, else None."""
    def scalar(name: str, value: float) -> bool:
        v = consts.get(name)
        return v is not None and v.size == 1 and abs(float(v.reshape(-1)[0]) - value) < 1e-4

    def only_consumer(node) -> onnx.NodeProto | None:
        users = consumers.get(node.output[0], [])
        return users[0] if len(users) == 1 else None

    div = producer.get(erf.input[0])
    if div is None or div.op_type != "Div" or not scalar(div.input[1], 2 ** 0.5):
        return None
    x = div.input[0]
    add = only_consumer(erf)
    if add is None or add.op_type != "Add" or not any(scalar(i, 1.0) for i in add.input):
        return None
    mul = only_consumer(add)
    if mul is None or mul.op_type != "Mul" or x not in mul.input:
        return None
    half = only_consumer(mul)
    if half is None or half.op_type != "Mul" or not any(scalar(i, 0.5) for i in half.input):
        return None
    if len(consumers.get(div.output[0], [])) != 1:
        return None
    return x, [div, erf, add, mul, half]


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _drop_value_info(graph: onnx.GraphProto, names: set[str]) -> None:
    kept = [v for v in graph.value_info if v.name not in names]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def spatial_mean_to_global_pool(model: onnx.ModelProto) -> int:
    """Replace every 4-D spatial ReduceMean (axes {2, 3}, keepdims) by GlobalAveragePool; returns how many."""
    graph = model.graph
    consts = constant_values(graph)
    ranks = {name: len(dims) for name, dims in inferred_dims(model).items()}
    replaced = 0
    for i, node in enumerate(graph.node):
        if node.op_type != "ReduceMean" or node_attribute(node, "keepdims", 1) != 1 or ranks.get(node.input[0]) != 4:
            continue
        axes = node_attribute(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1]:  # opset ≥ 18: axes is an input
            axes = consts.get(node.input[1])
        if axes is None or sorted(int(a) % 4 for a in np.asarray(axes).reshape(-1)) != [2, 3]:
            continue
        pool = onnx.helper.make_node("GlobalAveragePool", [node.input[0]], [node.output[0]],
                                     name=f"{node.name or node.output[0]}_global_pool")
        graph.node[i].CopyFrom(pool)
        replaced += 1
    if replaced:
        _drop_unused_initializers(graph)
    return replaced
