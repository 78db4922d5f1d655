"""Distillation = the one Trainer + a frozen teacher + weighted KD terms on named taps (no 2nd loop).

A preset's `distill` block names the teacher and the terms:

    distill:
      teacher: {preset: swin-t-att-unet, weights: teacher.pt, input_size: 512}
      terms:
        - {loss: nfd, weight: 5.0, pairs: [[stage1, stage1], [fusion, a3]]}
        - {loss: pkl, weight: 0.5, student: logits, teacher: logits, temperature: 2.0}

`Distiller.from_config` builds the teacher (frozen: eval mode, no gradients, BatchNorm statistics fixed), reads
the shape of every paired tap in one dry run of each model, and builds one adapter per pair from those shapes
(`KDLoss.build_adapter`); nobody types a channel count. The Trainer then calls, per batch:

    module = distiller.student_module(student)      # AdaptedStudent: student + adapters, what DDP wraps (once)
    x_s = distiller.student_input(images)            # the student's view (resized when the teacher's differs)
    logits, adapted = module(x_s)
    terms = distiller(images, adapted, masks)        # {"nfd": 5.0·L_nfd, "pkl": 0.5·L_pkl}, already weighted

`masks` (B×H×W labels) reach only the terms that ask for labels (`KDLoss.label_source`: BPKD's edges, CIRKD's
regions); a term that takes the teacher's predictions instead gets the teacher's argmax. Each term is built with
the data's ignore_index and model.num_classes where it takes them.

The Trainer trains `distiller.adapters` with the student (lr × distill.adapter_lr_mult). Building seeds every RNG
with `train.seed` first, so two runs with one seed start from the same adapters. Checkpoints hold the student
only; `distiller.adapters.state_dict()` goes into last.pt so a resumed run continues with the same adapters.

The teacher must be trained: without `distill.teacher.weights` building fails (exit 2) unless
`allow_random_teacher=True` (`segkd distill --random-teacher`, for smoke tests of the pipeline only).
`callbacks()` hangs the teacher's own val evaluation (its input size and normalisation) on `on_train_start`.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from segkd.config import Config, config_to_dict, load_config, size_hw
from segkd.engine.adapted_student import AdaptedStudent
from segkd.engine.checkpointing import seed_everything
from segkd.engine.evaluator import evaluate_model
from segkd.errors import ConfigError
from segkd.losses import build_loss
from segkd.losses.kd import KDLoss
from segkd.losses.resize import resize_to
from segkd.models import build_model, is_segkd_checkpoint, load_weights
from segkd.models.checkpoint import read_weights_file


@dataclass
class KDTerm:
    """One weighted KD loss over one or more (student tap, teacher tap) pairs."""

    name: str  # results.csv column (`train/<name>`): the loss name, `_2`, `_3`... when repeated
    weight: float
    loss: KDLoss
    pairs: list[tuple[str, str]]


class TermScales(nn.Module):
    """`distill.normalize`: each KD term divided by its mean raw value over the first `steps` training batches.

    The means stop moving after `steps` batches, so a weight then says how large a term is relative to where it
    started. They are buffers of the adapters' module, so last.pt carries them and a resumed run divides alike.
    """

    def __init__(self, names: list[str], steps: int):
        super().__init__()
        self.names, self.steps = list(names), steps
        self.register_buffer("total", torch.zeros(len(names)))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, raw: dict[str, Tensor]) -> dict[str, Tensor]:
        if int(self.count) < self.steps:
            self.total += torch.stack([raw[n].detach().float() for n in self.names])
            self.count += 1
        mean = (self.total / self.count.clamp(min=1)).clamp(min=1e-12)
        return {n: raw[n] / mean[i] for i, n in enumerate(self.names)}


#: a KD term this many times the hard-label loss at the first step is reported as dwarfing it
DWARFS = 20.0


@dataclass
class TeacherSpec:
    """The frozen teacher and how it sees the data."""

    model: nn.Module
    input_size: tuple[int, int]
    mean: list[float]
    std: list[float]
    source: str  # what it was loaded from, for messages


def parse_terms(terms: list[dict]) -> list[tuple[dict, list[tuple[str, str]]]]:
    """(loss spec for `build_loss`, pairs) per term; a malformed term fails naming `distill.terms[i]`."""
    if not terms:
        raise ConfigError("distill.terms is empty: name at least one KD term, e.g. {loss: kl, student: logits, teacher: logits}")
    parsed = []
    for i, term in enumerate(terms):
        where = f"distill.terms[{i}]"
        if not isinstance(term, dict):
            raise ConfigError(f"{where}: expected a mapping like {{loss: nfd, student: fusion, teacher: a3}}, got {term!r}")
        if "pairs" in term and ("student" in term or "teacher" in term):
            raise ConfigError(f"{where}: give either 'pairs' or 'student'/'teacher', not both")
        if "pairs" in term:
            pairs = term["pairs"]
            if not isinstance(pairs, list) or not pairs or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(n, str) for n in p) for p in pairs
            ):
                raise ConfigError(f"{where}: pairs={pairs!r} is not a list of [student_tap, teacher_tap]")
            pairs = [tuple(p) for p in pairs]
        else:
            student, teacher = term.get("student"), term.get("teacher")
            if not isinstance(student, str) or not isinstance(teacher, str):
                raise ConfigError(f"{where}: needs 'student' and 'teacher' tap names (or 'pairs')")
            pairs = [(student, teacher)]
        spec = {k: v for k, v in term.items() if k not in ("student", "teacher", "pairs")}
        parsed.append((spec, pairs))
    return parsed


def freeze_teacher(model: nn.Module) -> nn.Module:
    """Eval mode, no gradients, and `train()` keeps it in eval mode (BatchNorm statistics never move)."""
    model.eval()
    model.requires_grad_(False)
    model.train = types.MethodType(lambda self, mode=True: nn.Module.train(self, False), model)
    return model


def build_teacher(cfg: Config, allow_random: bool = False, size_from_checkpoint: bool = False) -> TeacherSpec:
    """The teacher named by `cfg.distill.teacher`: a segkd checkpoint (it rebuilds itself), or a preset's model
    (+ foreign weights).

    Its class count is the student's (both learn the same labels). Its input normalisation is the one it was
    trained with: the checkpoint's config when the weights are a segkd checkpoint, else its preset's. Its input
    size is distill.teacher.input_size, or the checkpoint's own with `size_from_checkpoint` (the size it was
    trained at), else the student's; the size used is written back into `cfg` (config.yaml says it).
    """
    tcfg = cfg.distill.teacher
    ckpt = read_weights_file(tcfg.weights) if tcfg.weights else None
    ckpt_cfg = ckpt["config"] if is_segkd_checkpoint(ckpt) else None
    if tcfg.preset is None and ckpt_cfg is None:
        raise ConfigError(
            "distill.teacher: set 'preset' (a preset whose model is the teacher) or 'weights' (a segkd checkpoint)"
        )
    if tcfg.weights is None and not allow_random:
        raise ConfigError(
            "distill.teacher.weights is not set: distillation needs a trained teacher "
            f"(train one with `segkd train --preset {tcfg.preset}`, then pass "
            "distill.teacher.weights=runs/train/<name>/weights/best.pt)"
        )
    if ckpt_cfg is not None:
        model_cfg, data = ckpt_cfg["model"], ckpt_cfg["data"]
        if model_cfg["num_classes"] != cfg.model.num_classes:
            raise ConfigError(f"{tcfg.weights}: the teacher has {model_cfg['num_classes']} classes, the student "
                              f"model.num_classes={cfg.model.num_classes}")
    else:
        tpre = load_config(tcfg.preset)
        model_cfg = {"arch": tpre.model.arch, "num_classes": cfg.model.num_classes, "options": tpre.model.options}
        data = {"mean": tpre.data.mean, "std": tpre.data.std}
    model = build_model(model_cfg)
    if tcfg.weights is not None:
        load_weights(model, tcfg.weights)
    if size_from_checkpoint and ckpt_cfg is not None:
        tcfg.input_size = ckpt_cfg["data"]["input_size"]
    size = size_hw(tcfg.input_size if tcfg.input_size is not None else cfg.data.input_size)
    source = tcfg.weights or f"{tcfg.preset} (random init)"
    return TeacherSpec(freeze_teacher(model), size, list(data["mean"]), list(data["std"]), str(source))


class Distiller:
    """A frozen teacher, KD terms and their trainable adapters; called by the Trainer once per batch."""

    def __init__(self, teacher: TeacherSpec, terms: list[KDTerm], adapters: nn.ModuleDict,
                 student_size: tuple[int, int], student_mean: list[float], student_std: list[float]):
        self.teacher = teacher.model
        self.teacher_spec = teacher
        self.terms = terms
        self.adapters = adapters
        self.student_size = student_size
        self.teacher_size = teacher.input_size
        self.teacher_metrics: dict[str, float] | None = None  # filled by `evaluate_teacher`
        self.last_raw: dict[str, Tensor] = {}  # each term's unweighted value at the last batch
        self.scale_reported = False
        # images arrive normalised for the student; the teacher gets x·std_s + mean_s, renormalised with its own
        self._renorm = None
        if (student_mean, student_std) != (teacher.mean, teacher.std):
            s_mean, s_std = (torch.tensor(v).view(1, 3, 1, 1) for v in (student_mean, student_std))
            t_mean, t_std = (torch.tensor(v).view(1, 3, 1, 1) for v in (teacher.mean, teacher.std))
            self._renorm = (s_std / t_std, (s_mean - t_mean) / t_std)  # x_t = a·x_s + b

    @classmethod
    def from_config(cls, cfg: Config, student: nn.Module | None = None, device: torch.device | str = "cpu",
                    allow_random_teacher: bool = False, teacher_size_from_checkpoint: bool = False) -> "Distiller":
        """Build everything `cfg.distill` describes; tap names and shapes are checked here (the teacher: see
        `build_teacher`).

        The dry run reads the student's tap shapes from `student` (on the CPU) or, when None, from a throwaway
        instance of `cfg.model` (the Trainer builds the real one).
        """
        if cfg.distill is None:
            raise ConfigError(f"preset '{cfg.preset}' has no distill block (teacher + terms): see `segkd presets`")
        parsed = parse_terms(cfg.distill.terms)
        seed_everything(cfg.train.seed)  # the teacher's random init (smoke tests), the probe and the adapters
        teacher = build_teacher(cfg, allow_random_teacher, teacher_size_from_checkpoint)
        student_size = size_hw(cfg.data.input_size)
        probe = student if student is not None else build_model(config_to_dict(cfg)["model"])
        s_shapes = probe.tap_shapes(student_size)
        t_shapes = teacher.model.tap_shapes(teacher.input_size)
        terms, adapters, seen = [], nn.ModuleDict(), {}
        term_defaults = {"ignore_index": cfg.data.ignore_index, "num_classes": cfg.model.num_classes}
        for i, (spec, pairs) in enumerate(parsed):
            name, weight, loss = build_loss(spec, where=f"distill.terms[{i}]", defaults=term_defaults)
            seen[name] = seen.get(name, 0) + 1
            column = name if seen[name] == 1 else f"{name}_{seen[name]}"
            if not isinstance(loss, KDLoss):
                raise ConfigError(f"distill.terms[{i}]: '{name}' is not a KD loss (KD losses take student and teacher taps)")
            loss.term = column
            adapters[column] = nn.ModuleList(
                loss.build_adapter(
                    _tap_shape(s_shapes, s, "student", probe, i), _tap_shape(t_shapes, t, "teacher", teacher.model, i)
                )
                for s, t in pairs
            )
            terms.append(KDTerm(column, weight, loss, pairs))
        if cfg.distill.normalize:
            adapters["kd_scales"] = TermScales([t.name for t in terms], cfg.distill.normalize_steps)
        return cls(teacher, terms, adapters, student_size, cfg.data.mean, cfg.data.std).to(device)

    def to(self, device: torch.device | str) -> "Distiller":
        self.teacher.to(device)
        self.adapters.to(device)
        for term in self.terms:
            term.loss.to(device)
        if self._renorm is not None:
            self._renorm = tuple(v.to(device) for v in self._renorm)
        return self

    @property
    def term_names(self) -> list[str]:
        """The KD terms' names, in order (results.csv columns `train/<name>`)."""
        return [t.name for t in self.terms]

    @property
    def train_input_size(self) -> tuple[int, int]:
        """(H, W) the train loader must produce: the larger of the teacher's and the student's input."""
        return max(self.student_size, self.teacher_size, key=lambda hw: hw[0] * hw[1])

    def student_input(self, images: Tensor) -> Tensor:
        """The batch at the student's size (bilinear, align_corners=True as FastSegFormer's KD_2)."""
        return resize_to(images, self.student_size, align_corners=True)

    def teacher_input(self, images: Tensor) -> Tensor:
        """The batch at the teacher's size, renormalised with the teacher's mean/std when they differ."""
        x = resize_to(images, self.teacher_size, align_corners=True)
        if self._renorm is not None:
            scale, shift = self._renorm
            x = x * scale + shift
        return x

    @torch.no_grad()
    def teacher_taps(self, images: Tensor) -> dict[str, Tensor]:
        return self.teacher.forward_taps(self.teacher_input(images))[1]

    def student_module(self, student: nn.Module) -> AdaptedStudent:
        """The student and these adapters as one module whose forward gives `adapted` for `__call__`."""
        return AdaptedStudent(student, self.adapters, {t.name: [s for s, _ in t.pairs] for t in self.terms})

    def __call__(self, images: Tensor, adapted: dict[str, list[Tensor]],
                 masks: Tensor | None = None) -> dict[str, Tensor]:
        """{term name: weight · loss} for one batch; `images` as the loader gives them (train_input_size),
        `adapted` the student's adapted taps (`AdaptedStudent(...).adapted`), `masks` the B×H×W labels (needed
        only by terms with a `label_source`)."""
        teacher_taps = self.teacher_taps(images)
        raw = {term.name: term.loss(adapted[term.name], [teacher_taps[t] for _, t in term.pairs],
                                    **term_labels(term.loss, masks, teacher_taps))
               for term in self.terms}
        self.last_raw = {k: v.detach() for k, v in raw.items()}  # no device sync: read by `report_scale` once
        if "kd_scales" in self.adapters:
            raw = self.adapters["kd_scales"](raw)
        return {term.name: term.weight * raw[term.name] for term in self.terms}

    def callbacks(self) -> dict[str, list[Callable[[Any], None]]]:
        """The Trainer events the distiller hangs on: the teacher's val metrics, once at the start."""
        return {"on_train_start": [self.evaluate_teacher], "on_train_batch_end": [self.report_scale]}

    def report_scale(self, trainer: Any) -> None:
        """After the run's first batch: one line with each KD term against the hard-label loss, and a warning
        for a term that dwarfs it (DWARFS× after its weight) while distill.normalize is off."""
        if self.scale_reported:
            return
        self.scale_reported = True
        losses = trainer.batch_losses
        hard = sum(v for k, v in losses.items() if k != "loss" and k not in self.term_names)
        parts, loud = [f"hard-label loss {hard:.3g}"], []
        for term in self.terms:
            value, ratio = losses[term.name], losses[term.name] / max(hard, 1e-12)
            parts.append(f"{term.name} {float(self.last_raw[term.name]):.3g} ×{term.weight:g}"
                         + (" /normalised" if "kd_scales" in self.adapters else "") + f" = {value:.3g} ({ratio:.2g}×)")
            if ratio > DWARFS and "kd_scales" not in self.adapters:
                loud.append(term.name)
        trainer.log(f"KD scale at the first step: {' · '.join(parts)}")
        if loud:
            trainer.log(f"[yellow]warning:[/] KD term {', '.join(loud)} starts over {DWARFS:g}× the hard-label loss "
                        "and drowns it: set distill.normalize=true (each term divided by its starting value) or "
                        "lower its weight")

    def evaluate_teacher(self, trainer: Any) -> dict[str, float]:
        """The teacher's metrics on the trainer's val split, at its own input size and normalisation."""
        data = dataclasses.replace(trainer.cfg.data, input_size=list(self.teacher_size),
                                   mean=self.teacher_spec.mean, std=self.teacher_spec.std)
        metrics = evaluate_model(self.teacher, trainer.val_set, data, device=trainer.device,
                                 batch_size=trainer.batch_size, absent=trainer.cfg.eval.absent, progress=False,
                                 amp=trainer.cfg.train.amp)
        self.teacher_metrics = metrics.summary()
        trainer.log(f"teacher val mIoU {100 * self.teacher_metrics['mIoU']:.2f}% ({self.teacher_arch})")
        return self.teacher_metrics

    @property
    def teacher_arch(self) -> str:
        return getattr(self.teacher, "arch", type(self.teacher).__name__)

    def describe(self) -> list[str]:
        """One line per term: name, weight, pairs and adapter kinds (for the run log)."""
        lines = []
        for term in self.terms:
            kinds = sorted({type(a).__name__ for a in self.adapters[term.name]})
            pairs = ", ".join(f"{s}->{t}" for s, t in term.pairs)
            lines.append(f"{term.name} ×{term.weight:g}: {pairs} (adapter: {'/'.join(kinds)})")
        return lines


def term_labels(loss: KDLoss, masks: Tensor | None, teacher_taps: dict[str, Tensor]) -> dict[str, Tensor]:
    """The `labels=` keyword a term's call takes: {} without a `label_source`, else the masks or the teacher's
    argmax (B×h×w)."""
    if loss.label_source is None:
        return {}
    if loss.label_source == "teacher":
        return {"labels": teacher_taps["logits"].argmax(1)}
    if masks is None:
        raise ValueError(f"KD term '{loss.name()}' needs the batch's labels: call distiller(images, adapted, masks)")
    return {"labels": masks}


def _tap_shape(shapes: dict[str, tuple[int, ...]], tap: str, role: str, model: nn.Module, index: int) -> tuple[int, ...]:
    if tap not in shapes:
        arch = getattr(model, "arch", type(model).__name__)
        raise ConfigError(
            f"distill.terms[{index}]: {role} tap '{tap}' does not exist in {arch} (available: {', '.join(shapes)})"
        )
    return shapes[tap]
