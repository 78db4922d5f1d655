"""Exact graph rewrites: Resize -> Conv1×1 swapped where it saves work, GELU fused, spatial means pooled."""

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from segkd.deploy.export import simplify_graph
from segkd.deploy.graph_passes import fuse_gelu, spatial_mean_to_global_pool, swap_resize_pointwise
from segkd.deploy.shape_folding import fold_shape_arithmetic


class UpThenConv(nn.Module):
    def __init__(self, cin: int, cout: int, scale: float, mode: str):
        super().__init__()
        self.scale, self.mode = scale, mode
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        align = True if self.mode == "bilinear" else None
        return self.conv(nn.functional.interpolate(x, scale_factor=self.scale, mode=self.mode, align_corners=align))


def _export(model, path, shape=(1, 8, 6, 10)):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(*shape),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"])
    proto, _ = simplify_graph(onnx.load(str(path)))
    return proto


def _run(proto, x):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_upsample_then_pointwise_conv_is_swapped_exactly(mode, tmp_path):
    proto = _export(UpThenConv(8, 3, 2.0, mode), tmp_path / "m.onnx")
    before = onnx.ModelProto()
    before.CopyFrom(proto)
    assert swap_resize_pointwise(proto) == 1
    onnx.checker.check_model(proto)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.index("Conv") < ops.index("Resize")
    x = np.random.default_rng(0).standard_normal((1, 8, 6, 10), dtype=np.float32)
    assert np.abs(_run(proto, x) - _run(before, x)).max() < 1e-5


class UpToSizeThenConv(nn.Module):
    """`interpolate(size=...)`: the exporter computes Resize's sizes from Shape(x) (the QAT graphs' final upsample)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 3, 1)

    def forward(self, x):
        return self.conv(nn.functional.interpolate(x, size=(x.shape[2] * 2, x.shape[3] * 2), mode="bilinear"))


def test_static_shape_arithmetic_folds_so_that_the_swap_applies(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(UpToSizeThenConv().eval(), (torch.randn(1, 8, 6, 10),), str(tmp_path / "m.onnx"),
                          dynamo=False, opset_version=17, input_names=["x"])
    proto = onnx.load(str(tmp_path / "m.onnx"))  # not simplified, as a QAT graph
    before = onnx.ModelProto()
    before.CopyFrom(proto)
    assert swap_resize_pointwise(proto) == 0  # sizes computed at run time: no factor to decide with
    assert fold_shape_arithmetic(proto) >= 2 and "Shape" not in [n.op_type for n in proto.graph.node]
    assert swap_resize_pointwise(proto) == 1
    onnx.checker.check_model(proto)
    x = np.random.default_rng(0).standard_normal((1, 8, 6, 10), dtype=np.float32)
    assert np.abs(_run(proto, x) - _run(before, x)).max() < 1e-5


@pytest.mark.parametrize("cin, cout, scale", [(3, 8, 2.0), (8, 3, 0.5)], ids=["adds-channels", "downsamples"])
def test_swap_only_where_it_saves_work(cin, cout, scale, tmp_path):
    proto = _export(UpThenConv(cin, cout, scale, "bilinear"), tmp_path / "m.onnx", shape=(1, cin, 8, 12))
    assert swap_resize_pointwise(proto) == 0


def test_exact_gelu_becomes_one_node_at_opset_20(tmp_path):
    model = nn.Sequential(nn.Conv2d(8, 8, 1), nn.GELU(), nn.Conv2d(8, 4, 1))
    proto = _export(model, tmp_path / "g.onnx")
    assert "Erf" in [n.op_type for n in proto.graph.node]
    fused = fuse_gelu(proto)
    ops = [n.op_type for n in fused.graph.node]
    assert ops.count("Gelu") == 1 and "Erf" not in ops and "Div" not in ops
    assert [o.version for o in fused.opset_import if o.domain in ("", "ai.onnx")] == [20]
    onnx.checker.check_model(fused)
    x = np.random.default_rng(0).standard_normal((1, 8, 6, 10), dtype=np.float32)
    assert np.abs(_run(fused, x) - _run(proto, x)).max() < 1e-5


class Means(nn.Module):
    """A squeeze-excite squeeze (spatial mean, kept dims) beside means that are not a global pool."""

    def forward(self, x):
        squeeze = x.mean((2, 3), keepdim=True)  # N×C×1×1: becomes GlobalAveragePool
        per_row = x.mean(3, keepdim=True)  # N×C×H×1: stays
        flat = x.mean((2, 3))  # N×C (keepdims=0): stays
        return x * squeeze + per_row + flat[:, :, None, None]


@pytest.mark.parametrize("opset", [17, 18])  # axes: an attribute, then an input
def test_spatial_mean_becomes_global_average_pool_exactly(opset, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Means(), (torch.randn(1, 4, 6, 10),), str(tmp_path / "m.onnx"), dynamo=False,
                          opset_version=opset, input_names=["x"])
    proto = onnx.load(str(tmp_path / "m.onnx"))
    before = onnx.ModelProto()
    before.CopyFrom(proto)
    assert spatial_mean_to_global_pool(proto) == 1
    onnx.checker.check_model(proto)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("GlobalAveragePool") == 1 and ops.count("ReduceMean") == 2
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 10), dtype=np.float32)
    assert np.abs(_run(proto, x) - _run(before, x)).max() < 1e-5
