"""`quant.qat=true` on the one Trainer: fake quantisation from quant.start_epoch, calibrated then learned."""

import pytest
import torch

from segkd.config import load_config
from segkd.engine.qat import qat_start_epoch
from segkd.engine.trainer import Trainer
from segkd.errors import ConfigError
from segkd.models import load_checkpoint, read_checkpoint
from segkd.quant import is_qat

from .conftest import write_preset


def make_cfg(tmp_path, voc_root, *overrides):
    preset = write_preset(tmp_path / "tiny.yaml")
    return load_config(str(preset), [f"data.root={voc_root}", f"project={tmp_path / 'runs'}", "name=q",
                                     "quant.qat=true", *overrides])


def test_default_start_is_the_last_fifth_or_the_first_epoch_from_weights(tmp_path, voc_root):
    assert qat_start_epoch(make_cfg(tmp_path, voc_root, "train.epochs=10")) == 8
    assert qat_start_epoch(make_cfg(tmp_path, voc_root, "train.epochs=2")) == 1
    assert qat_start_epoch(make_cfg(tmp_path, voc_root, "train.epochs=10", "quant.start_epoch=3")) == 3
    weights = make_cfg(tmp_path, voc_root, "train.epochs=10", f"model.weights={tmp_path / 'w.pt'}")
    assert qat_start_epoch(weights) == 0


def test_start_epoch_past_the_run_is_a_config_error(tmp_path, voc_root):
    with pytest.raises(ConfigError, match="quant.start_epoch=2 must be < train.epochs=2"):
        make_cfg(tmp_path, voc_root, "quant.start_epoch=2")


def test_qat_from_the_second_epoch_trains_weights_and_scales_and_saves_a_qat_best(tmp_path, voc_root):
    messages = []
    trainer = Trainer(make_cfg(tmp_path, voc_root, "train.epochs=2", "quant.calib_batches=2"))
    trainer.log = messages.append
    seen, calibrated = {}, {}
    trainer.add_callback("on_train_epoch_end", lambda t: seen.setdefault(t.epoch, is_qat(t.model)))
    trainer.add_callback("on_train_epoch_start", lambda t: calibrated.update(  # runs after the QAT callback
        {k: v.clone() for k, v in t.model.state_dict().items() if k.endswith("scale") or "original" in k}))
    trainer.train()
    assert seen == {0: False, 1: True}
    (line,) = [m for m in messages if m.startswith("qat: from epoch 2/2")]
    assert "BatchNorm and layer scales folded into convs (2)" in line and "logits conv 'head.2' fp32" in line
    assert "calibrated on 2 batches" in line
    group = next(g for g in trainer.optimizer.param_groups if g.get("name") == "qat")
    assert group["weight_decay"] == 0.0
    trained = trainer.model.state_dict()
    assert any(k.endswith("scale") for k in calibrated)
    assert all(not torch.equal(trained[k], v) for k, v in calibrated.items())  # weights and scales learn
    best = trainer.save_dir / "weights" / "best.pt"
    ckpt = read_checkpoint(best)
    assert ckpt["quant"]["logits_op"] == "head.2" and ckpt["best_epoch"] == 2  # best restarts with QAT
    model = load_checkpoint(best)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), trainer.eval_model.eval()(x))


def test_a_last_pt_inside_the_qat_phase_does_not_resume(tmp_path, voc_root):
    trainer = Trainer(make_cfg(tmp_path, voc_root, "train.epochs=2", "quant.start_epoch=0",
                               "quant.calib_batches=1"))
    trainer.train()
    last = trainer.save_dir / "weights" / "last.pt"
    cfg = make_cfg(tmp_path, voc_root, "train.epochs=3", f"resume={last}")
    with pytest.raises(ConfigError, match="saved inside its QAT phase"):
        Trainer(cfg)
