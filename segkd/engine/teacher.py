"""The distillation teacher: which model, from which file, seeing the images how (any family, any checkpoint).

`resolve_teacher(cfg)` decides from `distill.teacher` without building anything (it reads the weights file):
1. `weights` is a segkd checkpoint: it rebuilds itself. Architecture, options and classes come from the
   checkpoint's config, so do its mean/std and (`size_from_checkpoint`) the input size it was trained at;
   `preset` / `arch` are ignored, and the `note` says so.
2. `weights` is a foreign state dict (a paper's released weights): the architecture comes from `arch` (a
   registered model; mean/std: the family's default cfg) or `preset` (its model and mean/std); the file loads
   through the family's `checkpoint_filter_fn` (`segkd.models.load_weights`). Neither set: one line says so.
3. no `weights`: the preset's (or arch's) model at random init, only with `allow_random` (smoke tests).
The teacher has the student's class count; a checkpoint with another one is refused.
`build_teacher` then builds that model, loads the weights and freezes it (`freeze_teacher`).
"""

from __future__ import annotations

import types
from dataclasses import dataclass

from torch import nn

from segkd.config import Config, load_config, size_hw
from segkd.errors import ConfigError
from segkd.models import build_model, is_segkd_checkpoint, load_weights
from segkd.models.checkpoint import read_weights_file


@dataclass
class TeacherSource:
    """What `resolve_teacher` decided: the model to build and how it sees the images."""

    model_cfg: dict  # {arch, num_classes, options}: `segkd.models.build_model`
    input_size: tuple[int, int]
    mean: list[float] | None  # None: the model's own default cfg (a registered arch with foreign weights)
    std: list[float] | None
    source: str  # what it is loaded from, for messages
    note: str | None = None  # which of weights / preset / arch decided the model, when more than one was set


@dataclass
class TeacherSpec:
    """The frozen teacher and how it sees the data."""

    model: nn.Module
    input_size: tuple[int, int]
    mean: list[float]
    std: list[float]
    source: str  # what it was loaded from, for messages
    note: str | None = None


def resolve_teacher(cfg: Config, allow_random: bool = False, size_from_checkpoint: bool = False) -> TeacherSource:
    """The teacher `cfg.distill.teacher` names (see the module docstring); writes the input size used into `cfg`."""
    tcfg, k = cfg.distill.teacher, cfg.model.num_classes
    ckpt = read_weights_file(tcfg.weights) if tcfg.weights else None
    if ckpt is not None and is_segkd_checkpoint(ckpt):
        model_cfg, data = ckpt["config"]["model"], ckpt["config"]["data"]
        if model_cfg["num_classes"] != k:
            raise ConfigError(f"{tcfg.weights}: the teacher has {model_cfg['num_classes']} classes, the student "
                              f"model.num_classes={k}")
        if size_from_checkpoint:
            tcfg.input_size = data["input_size"]
        ignored = [f"distill.teacher.{key}={getattr(tcfg, key)}" for key in ("preset", "arch") if getattr(tcfg, key)]
        note = (f"teacher: {tcfg.weights} is a segkd checkpoint of {model_cfg['arch']}: its own model, classes and "
                f"normalisation win" + (f" over {' and '.join(ignored)}" if ignored else ""))
        return TeacherSource(_model(model_cfg["arch"], k, model_cfg.get("options", {})), _size(cfg),
                             list(data["mean"]), list(data["std"]), str(tcfg.weights), note)
    if tcfg.preset and tcfg.arch:
        raise ConfigError(f"distill.teacher: give preset={tcfg.preset} or arch={tcfg.arch}, not both")
    if not tcfg.preset and not tcfg.arch:
        raise ConfigError(
            f"distill.teacher.weights={tcfg.weights} is not a segkd checkpoint: set distill.teacher.arch=MODEL "
            "(see `segkd presets`) or distill.teacher.preset=NAME so segkd knows its architecture"
            if tcfg.weights else
            "distill.teacher: set 'weights' (a segkd checkpoint), or 'preset' / 'arch' (the teacher's model)")
    if tcfg.weights is None and not allow_random:
        raise ConfigError(
            "distill.teacher.weights is not set: distillation needs a trained teacher "
            f"(train one with `segkd train --preset {tcfg.preset or '<preset>'}`, then pass "
            "distill.teacher.weights=runs/train/<name>/weights/best.pt)")
    source = str(tcfg.weights or f"{tcfg.preset or tcfg.arch} (random init)")
    if tcfg.arch:
        return TeacherSource(_model(tcfg.arch, k, {}), _size(cfg), None, None, source)
    preset = load_config(tcfg.preset)
    return TeacherSource(_model(preset.model.arch, k, preset.model.options), _size(cfg),
                         list(preset.data.mean), list(preset.data.std), source)


def build_teacher(spec: TeacherSource, weights: str | None, mean: list[float], std: list[float]) -> TeacherSpec:
    """The model `spec` describes with `weights` loaded (segkd checkpoint or, through the family's filter, a
    foreign state dict), frozen."""
    model = build_model(spec.model_cfg)
    if weights is not None:
        load_weights(model, weights)
    return TeacherSpec(freeze_teacher(model), spec.input_size, list(mean), list(std), spec.source, spec.note)


def freeze_teacher(model: nn.Module) -> nn.Module:
    """Eval mode, no gradients, and `train()` keeps it in eval mode (BatchNorm statistics never move)."""
    model.eval()
    model.requires_grad_(False)
    model.train = types.MethodType(lambda self, mode=True: nn.Module.train(self, False), model)
    return model


def _model(arch: str, num_classes: int, options: dict) -> dict:
    return {"arch": arch, "num_classes": num_classes, "options": dict(options or {})}


def _size(cfg: Config) -> tuple[int, int]:
    """distill.teacher.input_size, else the student's."""
    size = cfg.distill.teacher.input_size
    return size_hw(size if size is not None else cfg.data.input_size)
