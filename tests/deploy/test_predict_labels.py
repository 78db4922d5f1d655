"""`predict_labels` is the one label path: eval, the torch predictor and `export --argmax` all take it.

`deploy_tiny_labels` computes labels that are NOT the argmax of its logits (class 2 wherever the red channel is
bright, else 0), so any path that still argmaxes the logits shows up.
"""

import numpy as np
import pytest
import torch

from segkd.deploy.export import export_onnx
from segkd.deploy.loading import load_model
from segkd.deploy.onnx_model import OnnxModel
from segkd.deploy.predictor import Predictor
from segkd.engine.evaluator import evaluate_model
from segkd.errors import ConfigError
from segkd.models import labels_are_argmax, list_models, register_model

from .conftest import TinySeg, save_checkpoint


class TinyOwnLabels(TinySeg):
    def predict_labels(self, x):
        return torch.where(x[:, 0] > 0.5, 2, 0)  # B×H×W, red channel above 0.5 after normalisation


if "deploy_tiny_labels" not in list_models():

    @register_model
    def deploy_tiny_labels(num_classes: int = 3, **kwargs) -> TinyOwnLabels:
        return TinyOwnLabels(num_classes, **kwargs)


def half_red(h=24, w=40):
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2, 0] = 255  # left half red
    return image


def expected(h=24, w=40):
    labels = np.zeros((h, w), np.int64)
    labels[:, : w // 2] = 2
    return labels


@pytest.fixture
def own_ckpt(tmp_path):
    return save_checkpoint(tmp_path / "own.pt", arch="deploy_tiny_labels")


def test_the_model_really_differs_from_argmax(own_ckpt):
    model = load_model(own_ckpt).model
    assert not labels_are_argmax(model)
    x = torch.randn(1, 3, 32, 32)
    assert not torch.equal(model.predict_labels(x), model(x).argmax(1))


def test_torch_predictor_uses_predict_labels(own_ckpt):
    labels = Predictor.load(own_ckpt, device="cpu").predict([half_red()])[0]
    assert labels.shape == (24, 40) and np.array_equal(labels, expected())


def test_eval_uses_predict_labels(own_ckpt):
    loaded = load_model(own_ckpt)
    dataset = [(half_red(), expected().astype(np.uint8))]
    metrics = evaluate_model(loaded.model, dataset, loaded.config["data"])
    assert metrics.aAcc == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="computes its own labels .*TTA and slide need scores"):
        evaluate_model(loaded.model, dataset, loaded.config["data"], flip=True)


def test_export_argmax_uses_predict_labels(own_ckpt, tmp_path):
    loaded = load_model(own_ckpt)
    result = export_onnx(loaded.model, loaded.meta, tmp_path / "own.onnx", argmax=True)
    x = loaded.meta.preprocess()(half_red(32, 32))[0][None]
    assert np.array_equal(OnnxModel(result.path)(x)[0], expected(32, 32))
