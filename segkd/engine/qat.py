"""Quantisation-aware training on the one Trainer, hung on its events: `quant.qat=true` (train or distill).

From epoch `quant.start_epoch` (default: the last 20 % of the epochs, or from the first when `model.weights`
starts the run from trained fp32 weights) the student trains through the fake quantisers of `segkd.quant`:

1. `prepare_qat` on the first batch: BatchNorm and layer scales folded into their conv (checked: same outputs),
   uint8 per-tensor input/output and 7-bit-in-int8 per-channel weight quantisers on every conv but the one
   producing the logits.
2. Calibration: `quant.calib_batches` train batches without gradients set each range to its min/max (ONNX
   Runtime's MinMax calibration), so QAT starts from post-training int8.
3. Training: the scales and zero points are parameters (LSQ+), in an optimizer group `qat` at
   lr × `quant.lr_mult`, without weight decay. Hard-label and KD losses reach the weights and the scales
   through the straight-through estimator: the teacher guides the quantised student.
4. EMA (train.ema) restarts from the quantised model; best.pt restarts too, so that it always holds a
   fake-quantised model (the fp32 epochs before are a different model). Checkpoints carry `quant` metadata
   (`segkd.quant.QATSpec`), from which eval, predict and export rebuild the fake-quantised model.

One process only (the module tree changes mid-run, which a DDP wrapper does not follow), and a run inside its
QAT phase is not resumable: `segkd train ... model.weights=<last.pt> quant.qat=true` continues from it.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

from segkd.engine.device import world
from segkd.engine.ema import ModelEMA
from segkd.errors import ConfigError
from segkd.models import read_checkpoint
from segkd.quant import calibrating, is_qat, prepare_qat

QAT_TAIL = 0.2  # default: the last 20 % of the epochs


def qat_start_epoch(cfg: Any) -> int:
    """0-based epoch where fake quantisation starts."""
    if cfg.quant.start_epoch is not None:
        return cfg.quant.start_epoch
    if cfg.model.weights:
        return 0
    epochs = cfg.train.epochs
    return epochs - max(1, round(QAT_TAIL * epochs))


def attach_qat(trainer: Any) -> "QATCallback":
    """Check that the run can do QAT and hang the callback on `on_train_epoch_start`."""
    cfg = trainer.cfg
    if world()[1] > 1 or cfg.train.devices not in (None, 1, "1"):
        raise ConfigError("quant.qat=true runs in one process: drop train.devices (the model changes mid-run, "
                          "which DDP does not follow)")
    if cfg.resume and "quant" in read_checkpoint(cfg.resume):
        raise ConfigError(f"{cfg.resume}: saved inside its QAT phase, which cannot resume; continue with "
                          f"model.weights={cfg.resume} quant.qat=true (QAT from the first epoch)")
    callback = QATCallback(qat_start_epoch(cfg), cfg.quant.calib_batches, cfg.quant.lr_mult, cfg.quant.reduce_range)
    trainer.add_callback("on_train_epoch_start", callback.on_train_epoch_start)
    return callback


class QATCallback:
    """Turns the trainer's model quantisation-aware at the start of epoch `start` (see the module docstring)."""

    def __init__(self, start: int, calib_batches: int, lr_mult: float, reduce_range: bool = True):
        self.start, self.calib_batches, self.lr_mult, self.reduce_range = start, calib_batches, lr_mult, reduce_range

    def on_train_epoch_start(self, trainer: Any) -> None:
        if trainer.epoch < self.start:
            return
        if is_qat(trainer.model):
            if trainer.epoch == trainer.start_epoch:
                trainer.log("qat: model.weights is a QAT checkpoint: its fake quantisers train on")
            return
        self.begin(trainer)

    def begin(self, trainer: Any) -> None:
        model, device = trainer.model, trainer.device
        batches = [self._student_input(trainer, images.to(device))
                   for images, _ in itertools.islice(trainer.train_loader, self.calib_batches)]
        spec = prepare_qat(model, batches[0][:1], self.reduce_range)
        model.to(device)  # the new quantisers
        with calibrating(model):
            for x in batches:
                model(x)
        self._add_parameters(trainer)
        if trainer.ema is not None:
            ema = ModelEMA(model, trainer.ema.decay)
            ema.updates = trainer.ema.updates
            trainer.ema = ema
        trainer.best_fitness, trainer.best_epoch = None, None
        trainer.log(f"qat: from epoch {trainer.epoch + 1}/{trainer.cfg.train.epochs}: {spec.describe()}; "
                    f"calibrated on {len(batches)} batches, scales learned from here; best.pt now tracks "
                    "the fake-quantised model")

    @staticmethod
    def _student_input(trainer: Any, images: torch.Tensor) -> torch.Tensor:
        distiller = trainer.distiller
        return distiller.student_input(images) if distiller is not None else images

    def _add_parameters(self, trainer: Any) -> None:
        """The quantisers' scales and zero points and the biases folding added: one `qat` optimizer group."""
        optimizer = trainer.optimizer
        known = {id(p) for group in optimizer.param_groups for p in group["params"]}
        new = [p for p in trainer.model.parameters() if id(p) not in known]
        if new:
            lr = optimizer.param_groups[0]["lr"] / optimizer.param_groups[0].get("lr_mult", 1.0)
            optimizer.add_param_group({"params": new, "name": "qat", "lr_mult": self.lr_mult,
                                       "lr": lr * self.lr_mult, "weight_decay": 0.0})
