"""int8 quantisation: every op set keeps the op that produces the logits in fp32."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from segkd.data.io import read_image
from segkd.deploy.export import export_onnx
from segkd.deploy.loading import load_model
from segkd.deploy.quantize import INT8_OP_SETS, logits_nodes, quantize_int8


def _graph(argmax: bool) -> onnx.GraphProto:
    nodes = [helper.make_node("Conv", ["x", "w"], ["feat"], name="cls"),
             helper.make_node("Resize", ["feat", "", "scales"], ["logits"])]  # unnamed, as exporters leave some
    if argmax:
        nodes.append(helper.make_node("ArgMax", ["logits"], ["labels"], name="argmax", axis=1))
    out = helper.make_tensor_value_info("labels" if argmax else "logits", TensorProto.FLOAT, None)
    return helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)], [out])


@pytest.mark.parametrize("argmax", [False, True])
def test_logits_nodes_names_the_output_op_and_looks_through_argmax(argmax):
    graph = _graph(argmax)
    names = logits_nodes(graph)
    assert names == (["argmax", "segkd:logits"] if argmax else ["segkd:logits"])
    assert graph.node[1].name == "segkd:logits"  # named in place, so the quantiser can exclude it


@pytest.mark.parametrize("op_set", list(INT8_OP_SETS))
def test_int8_logits_come_from_an_fp32_op(op_set, tiny_ckpt, tiny_data, tmp_path):
    loaded = load_model(tiny_ckpt)
    fp32 = export_onnx(loaded.model, loaded.meta, tmp_path / "m.onnx").path
    images = [read_image(p) for p in sorted((tiny_data / "JPEGImages").iterdir())[:3]]
    int8 = quantize_int8(fp32, tmp_path / "m.int8.onnx", loaded.meta, images, op_types=INT8_OP_SETS[op_set])
    graph = onnx.load(str(int8.path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    last = producer["logits"]
    assert last.op_type == "Resize"  # TinySeg upsamples its 1/4 logits; not a DequantizeLinear of uint8 logits
    assert producer[last.input[0]].op_type == "DequantizeLinear"  # ... while the head before it is int8
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    assert "the logits' own op stays fp32" in int8.notes[0]
    h, w = loaded.meta.input_size
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    logits = ort.InferenceSession(str(int8.path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    assert logits.shape == (1, 3, h, w) and np.isfinite(logits).all()
