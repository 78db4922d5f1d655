"""OnnxModel: metadata, fixed-batch slicing, foreign files, errors; OnnxModule for the evaluator."""

import warnings

import numpy as np
import pytest
import torch

from segkd.deploy.export import export_onnx
from segkd.deploy.loading import load_model
from segkd.deploy.onnx_model import OnnxModel, OnnxModule
from segkd.errors import WeightsError

from .conftest import CLASSES


@pytest.fixture
def static_onnx(tiny_ckpt, tmp_path):
    loaded = load_model(tiny_ckpt)
    return export_onnx(loaded.model, loaded.meta, tmp_path / "m.onnx").path, loaded.model


def test_metadata_and_fixed_batch_slices(static_onnx):
    path, model = static_onnx
    om = OnnxModel(path)
    assert om.meta.classes == CLASSES and om.output == "logits" and om.fixed_batch == 1
    n = sum(p.numel() for p in model.parameters())
    assert 0.95 * n < om.params < 1.05 * n  # BatchNorm folded into the convs
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(om(x) - ref).max() < 1e-4  # 3 images through a batch-1 graph


def test_module_wraps_the_session(static_onnx):
    path, model = static_onnx
    module = OnnxModule(OnnxModel(path))
    assert module.fixed_input_size == (32, 32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(module(x), model(x), atol=1e-4)


def test_foreign_onnx_gets_generic_metadata(tmp_path):
    model = torch.nn.Conv2d(3, 5, 1).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, 16, 24),), str(tmp_path / "f.onnx"), dynamo=False,
                          input_names=["x"])
    om = OnnxModel(tmp_path / "f.onnx")
    assert om.meta.num_classes == 5 and om.meta.input_size == [16, 24] and om.meta.classes[4] == "class4"
    assert om(np.zeros((1, 3, 16, 24), np.float32)).shape == (1, 5, 16, 24)


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(WeightsError, match="ONNX file not found"):
        OnnxModel(tmp_path / "none.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match=r"bad.onnx: not a loadable ONNX model"):
        OnnxModel(tmp_path / "bad.onnx")
