"""ONNX export: graph I/O, dynamic axes, metadata, parity with PyTorch, every registered family."""

import pkgutil

import numpy as np
import onnx
import pytest
import torch

from segkd.config import config_to_dict, load_config
from segkd.deploy.export import export_onnx, read_meta
from segkd.deploy.loading import load_model
from segkd.deploy.meta import DeployMeta
from segkd.deploy.onnx_model import OnnxModel
from segkd.deploy.verify import parity_inputs, synthetic_image, verify_onnx
from segkd.errors import ConfigError, WeightsError
import segkd.models
from segkd.models import create_model, list_models, model_family

from .conftest import CLASSES, PALETTE

# Real families: each is exported static and dynamic and checked against PyTorch, at the side given here.
# A family registered later joins by itself (its first entrypoint, at 64 or its fixed size); list it here to
# choose the entrypoint and side.
KNOWN = {"fastsegformer_p": 224, "fastsegformer_e": 224, "segformer_b0": 64, "swin_t_att_unet": 64}
PACKAGE_FAMILIES = {m.name for m in pkgutil.iter_modules(segkd.models.__path__)}


def family_entrypoints() -> dict[str, int]:
    chosen = {name: side for name, side in KNOWN.items() if name in list_models()}
    covered = {model_family(name) for name in chosen}
    for name in list_models():
        family = model_family(name)
        if family in PACKAGE_FAMILIES and family not in covered:
            chosen[name], covered = 64, covered | {family}
    return chosen


FAMILIES = family_entrypoints()


def _io(path):
    graph = onnx.load(str(path)).graph
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    return {v.name: dims(v) for v in graph.input}, {v.name: dims(v) for v in graph.output}


def _parity(path, model, meta, dynamic, precision="fp32"):
    real = [meta.preprocess()(synthetic_image(50, 70))[0]]
    inputs = parity_inputs(real, tuple(meta.input_size), dynamic, getattr(model, "size_divisor", 1), precision)
    return verify_onnx(OnnxModel(path), model, inputs, precision)


def test_static_export_has_named_io_and_metadata(tiny_ckpt, tmp_path):
    loaded = load_model(tiny_ckpt)
    result = export_onnx(loaded.model, loaded.meta, tmp_path / "m.onnx")
    inputs, outputs = _io(result.path)
    assert inputs == {"images": [1, 3, 32, 32]} and outputs == {"logits": [1, 3, 32, 32]}
    meta = read_meta(result.path)
    assert meta.classes == CLASSES and meta.palette == PALETTE and meta.input_size == [32, 32]
    assert meta.resize == "letterbox" and meta.pad_value == 128 and meta.precision == "fp32"
    assert meta.dynamic == [] and meta.segkd_version
    report = _parity(result.path, loaded.model, meta, [])
    assert report.passed and report.max_abs < 1e-4 and report.agreement == 100.0


def test_dynamic_export_runs_other_batch_and_size(tiny_ckpt, tmp_path):
    loaded = load_model(tiny_ckpt)
    result = export_onnx(loaded.model, loaded.meta, tmp_path / "m.onnx", dynamic=True, imgsz=(32, 48))
    inputs, outputs = _io(result.path)
    assert inputs["images"] == ["batch", 3, "height", "width"]
    assert result.meta.dynamic == ["batch", "height", "width"] and result.meta.input_size == [32, 48]
    report = _parity(result.path, loaded.model, result.meta, result.meta.dynamic)
    assert [c.shape for c in report.cases][-2:] == [(2, 3, 32, 48), (1, 3, 40, 60)]
    assert report.passed


def test_fixed_size_model_keeps_hw_static_and_says_so(tiny_fixed_ckpt, tmp_path):
    loaded = load_model(tiny_fixed_ckpt)
    result = export_onnx(loaded.model, loaded.meta, tmp_path / "m.onnx", dynamic=True)
    assert _io(result.path)[0]["images"] == ["batch", 3, 32, 32]
    assert result.meta.dynamic == ["batch"]
    assert "dynamic height/width impossible" in result.notes[0] and "32×32" in result.notes[0]
    assert _parity(result.path, loaded.model, result.meta, result.meta.dynamic).passed
    with pytest.raises(ConfigError, match="only runs at 32×32"):
        export_onnx(loaded.model, loaded.meta, tmp_path / "x.onnx", imgsz=(64, 64))


def test_size_must_fit_the_divisor(tiny_ckpt, tmp_path):
    loaded = load_model(tiny_ckpt)
    with pytest.raises(ConfigError, match="multiples of 4"):
        export_onnx(loaded.model, loaded.meta, tmp_path / "x.onnx", imgsz=(30, 32))


def test_argmax_exports_labels(tiny_ckpt, tmp_path):
    loaded = load_model(tiny_ckpt)
    result = export_onnx(loaded.model, loaded.meta, tmp_path / "m.onnx", argmax=True, simplify=False)
    assert _io(result.path)[1] == {"labels": [1, 32, 32]} and result.meta.output == "labels"
    report = _parity(result.path, loaded.model, result.meta, [])
    assert report.passed and report.max_abs is None


def test_predict_labels_hook_is_used(tiny_ckpt, tmp_path):
    loaded = load_model(tiny_ckpt)
    loaded.model.predict_labels = lambda x: (x[:, 0] > 1e9).long()  # B×H×W, all 0 here
    result = export_onnx(loaded.model, loaded.meta, tmp_path / "m.onnx", argmax=True)
    assert not OnnxModel(result.path)(np.zeros((1, 3, 32, 32), np.float32)).any()


def test_foreign_state_dict_loads_with_a_preset(tmp_path):
    model = create_model("deploy_tiny", num_classes=4)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "foreign.pth")
    loaded = load_model(tmp_path / "foreign.pth", "fastsegformer-p", ["model.arch=deploy_tiny", "model.options={}"])
    assert loaded.meta.classes[:2] == ["background", "sunburn"] and loaded.meta.input_size == [224, 224]
    with pytest.raises(WeightsError, match="not a segkd checkpoint"):
        load_model(tmp_path / "foreign.pth")
    with pytest.raises(WeightsError, match="an ONNX file"):
        load_model(tmp_path / "m.onnx")


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("arch", list(FAMILIES))
def test_every_family_exports_and_verifies(arch, dynamic, tmp_path):
    torch.manual_seed(0)
    model = create_model(arch, num_classes=4).eval()
    side = model.fixed_input_size[0] if model.fixed_input_size else FAMILIES[arch]
    cfg = config_to_dict(load_config("fastsegformer-p", [f"model.arch={arch}", "model.options={}",
                                                         f"data.input_size={side}"]))
    meta = DeployMeta.from_config(cfg)
    result = export_onnx(model, meta, tmp_path / f"{arch}.onnx", dynamic=dynamic)
    static = getattr(model, "fixed_input_size", None) or getattr(model, "static_graph_reason", None)
    if dynamic:
        assert result.meta.dynamic == (["batch"] if static else ["batch", "height", "width"])
    report = _parity(result.path, model, result.meta, result.meta.dynamic)
    assert report.passed, report.failures
