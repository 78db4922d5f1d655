"""A QAT model's int8 QDQ graph: ONNX Runtime computes the fake-quantised forward (int8 kernels fused), the
logits conv stays fp32, and a QAT checkpoint round-trips through `segkd export --int8` and `segkd eval`."""

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from typer.testing import CliRunner

from segkd.cli import app
from segkd.deploy.meta import DeployMeta
from segkd.deploy.qat_export import export_qat_int8
from segkd.models import checkpoint_payload, load_checkpoint
from segkd.quant import QATSpec, apply_qat, calibrating, prepare_qat

from testkit import flat, load_test_module

fx = load_test_module("deploy_fixtures", "deploy/conftest.py")  # registers `deploy_tiny`
runner = CliRunner()


class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU(inplace=True)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(16, 16, 1)
        self.c4 = nn.Conv2d(16, 3, 1)

    def forward(self, x):
        y = self.c2(self.act(self.bn(self.c1(x))))
        return self.c4(self.c3(y) + y)


def calibrate(model, size=16, batches=3, seed=1):
    torch.manual_seed(seed)
    with calibrating(model):
        for _ in range(batches):
            model(torch.randn(4, 3, size, size))
    return model.eval()


def meta(size=16):
    return DeployMeta("chain", 3, ["a", "b", "c"], [[0, 0, 0]] * 3, [size, size])


def test_onnx_runtime_int8_equals_the_fake_quantised_forward(tmp_path):
    torch.manual_seed(1)
    model = Chain()
    model.bn.running_var.uniform_(0.5, 2.0)
    apply_qat(model, QATSpec(folded=[["c1", "bn"]], quantized=["c1", "c2", "c3", "c4"], logits_op=None))
    calibrate(model)  # every conv in int8: the output itself is uint8, one step = c4's output scale
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x).numpy()
    export_qat_int8(model, meta(), tmp_path / "m.int8.onnx", dynamic=True)
    got = {}
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()  # disabled: the QDQ graph as written; all: ONNX Runtime's int8 kernels
        options.graph_optimization_level = level
        options.optimized_model_filepath = str(tmp_path / f"{level.name}.onnx")
        got[level.name] = ort.InferenceSession(str(tmp_path / "m.int8.onnx"), options, providers=[
            "CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    step = float(model.c4.output_quant.scale.detach())
    # the same uint8 outputs (torch's own fake-quant kernels and fp32 biases put 1 % of them a step away)
    assert np.abs(got["ORT_DISABLE_ALL"] - ref).max() < step / 100
    fused = got["ORT_ENABLE_ALL"]  # QLinearAdd (c3 + its input) rounds on its own: a rare step
    assert np.abs(fused - ref).max() <= step * 1.001 and np.mean(np.abs(fused - ref) > step / 100) < 0.002
    ops = [n.op_type for n in onnx.load(str(tmp_path / "ORT_ENABLE_ALL.onnx")).graph.node]
    assert ops.count("QLinearConv") == 4 and "Conv" not in ops


def test_a_dead_channel_with_a_bias_keeps_its_conv_int8_and_exact(tmp_path):
    torch.manual_seed(0)
    model = Chain()
    with torch.no_grad():
        model.c3.weight[0] = 0.0  # weight scale ~0: bias / (input scale × weight scale) overflows int32
        model.c3.bias[0] = 0.5
    apply_qat(model, QATSpec(quantized=["c1", "c2", "c3", "c4"], logits_op=None))
    calibrate(model)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = model(x).numpy()
    export = export_qat_int8(model, meta(), tmp_path / "m.int8.onnx", dynamic=True)
    assert "3 int32 biases" in export.notes[-1]  # c2, c3 (its dead channel's scale widened) and c4; c1 has none
    got = {}
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()  # basic: the graph as written; all: ONNX Runtime's int8 kernels fused
        options.graph_optimization_level = level
        options.optimized_model_filepath = str(tmp_path / f"{level.name}.onnx")
        got[level.name] = ort.InferenceSession(str(tmp_path / "m.int8.onnx"), options, providers=[
            "CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    assert np.abs(got["ORT_ENABLE_BASIC"] - ref).max() <= float(model.c4.output_quant.scale.detach()) * 1.001
    fused = [n.op_type for n in onnx.load(str(tmp_path / "ORT_ENABLE_ALL.onnx")).graph.node]
    assert fused.count("QLinearConv") == 4 and "Conv" not in fused


def test_the_logits_conv_stays_fp32_in_the_int8_graph(tmp_path):
    model = fx.decisive_model("deploy_tiny")
    spec = prepare_qat(model, torch.randn(1, 3, 32, 32))
    assert spec.logits_op == "head" and spec.quantized == ["backbone.0", "backbone.3"]
    calibrate(model, size=32)
    export_qat_int8(model, meta(32), tmp_path / "m.int8.onnx")
    graph = onnx.load(str(tmp_path / "m.int8.onnx")).graph
    producer = {out: n for n in graph.node for out in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    initializers = {t.name: t for t in graph.initializer}
    int8_inputs = [producer.get(c.input[0]) is not None and producer[c.input[0]].op_type == "DequantizeLinear"
                   for c in convs]
    assert int8_inputs == [True, True, False]  # the last (logits) conv reads fp32
    logits = convs[-1]
    assert initializers[logits.input[1]].data_type == onnx.TensorProto.FLOAT
    assert not any(n.op_type == "QuantizeLinear" and logits.output[0] in n.input for n in graph.node)
    int8 = [initializers[producer[c.input[1]].input[0]] for c in convs[:2]]
    assert all(t.data_type == onnx.TensorProto.INT8 for t in int8)  # weights stored in int8


def qat_checkpoint(tmp_path, data):
    model = fx.decisive_model("deploy_tiny")
    prepare_qat(model, torch.randn(1, 3, 32, 32))
    calibrate(model, size=32)
    cfg = fx.tiny_config()
    cfg["data"]["root"] = str(data)
    cfg["quant"]["qat"] = True
    path = tmp_path / "qat.pt"
    torch.save(checkpoint_payload(model, cfg), path)
    return path, model


def test_a_qat_checkpoint_round_trips_through_load_export_and_eval(tmp_path):
    data = fx.write_dataset(tmp_path / "data")
    ckpt, model = qat_checkpoint(tmp_path, data)
    assert torch.load(ckpt, weights_only=True)["quant"]["logits_op"] == "head"
    loaded = load_checkpoint(ckpt)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))  # comes back fake-quantised

    result = runner.invoke(app, ["export", "--weights", str(ckpt), "--int8", "--device", "cpu"])  # no --calib
    assert result.exit_code == 0, result.output
    text = flat(result)
    assert "ONNX int8: export success ✅" in text and "scales learned in QAT" in text
    int8_line = next(ln for ln in result.stdout.splitlines() if ln.startswith("ONNX int8"))
    agreement = float(int8_line.split("argmax agreement ")[1].split("%")[0])
    assert agreement >= 99.5
    assert "BatchNorm folded" in text and "no calibration" in text

    result = runner.invoke(app, ["eval", "--weights", str(ckpt), "--data", str(data), "--split", "val",
                                 f"project={tmp_path / 'runs'}"])
    assert result.exit_code == 0, result.output
    assert "evaluated the fake-quantised int8 model" in flat(result)


def test_a_qat_checkpoint_refuses_another_int8_op_set(tmp_path):
    data = fx.write_dataset(tmp_path / "data")
    ckpt, _ = qat_checkpoint(tmp_path, data)
    result = runner.invoke(app, ["export", "--weights", str(ckpt), "--int8", "--int8-ops", "all"])
    assert result.exit_code == 2
    assert "learned its scales for op set 'conv'" in flat(result)
