"""Distillation = the one Trainer + a frozen teacher + weighted KD terms on named taps (no 2nd loop).

A preset's `distill` block names the teacher and the terms:

    distill:
      teacher: {preset: swin-t-att-unet, weights: teacher.pt, input_size: 512}
      terms:
        - {loss: nfd, weight: 5.0, pairs: [[stage1, stage1], [fusion, a3]]}
        - {loss: pkl, weight: 0.5, student: logits, teacher: logits, temperature: 2.0}

`Distiller.from_config` resolves the teacher (`segkd.engine.teacher`: any family, a segkd checkpoint rebuilds
itself), reads the shape of every tap of both models on the meta device (`segkd.engine.tap_pairs`: a pair naming a
missing tap fails before any weight is built, `pairs: auto` pairs taps of equal stride), builds one adapter per
pair from those shapes (`KDLoss.build_adapter`; nobody types a channel count), then builds and freezes the
teacher (eval mode, no gradients, BatchNorm statistics fixed). The Trainer then calls, per batch:

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
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from segkd.config import Config, config_to_dict, size_hw
from segkd.engine.adapted_student import AdaptedStudent
from segkd.engine.checkpointing import seed_everything
from segkd.engine.evaluator import evaluate_model
from segkd.engine.tap_pairs import AUTO, auto_pairs, check_tap, probe_taps
from segkd.engine.teacher import TeacherSpec, build_teacher, resolve_teacher
from segkd.errors import ConfigError
from segkd.losses import build_loss
from segkd.losses.kd import KDLoss
from segkd.losses.resize import resize_to


@dataclass
class KDTerm:
    """One weighted KD loss over one or more (student tap, teacher tap) pairs."""

    name: str  # results.csv column (`train/<name>`): the loss name, `_2`, `_3`... when repeated
    weight: float
    loss: KDLoss
    pairs: list[tuple[str, str]]
    skipped: list[str] | None = None  # `pairs: auto`: student taps with no teacher tap at their stride


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


def parse_terms(terms: list[dict]) -> list[tuple[dict, list[tuple[str, str]] | str]]:
    """(loss spec for `build_loss`, pairs or 'auto') per term; a malformed term fails naming `distill.terms[i]`."""
    if not terms:
        raise ConfigError("distill.terms is empty: name at least one KD term, e.g. {loss: kl, student: logits, teacher: logits}")
    parsed = []
    for i, term in enumerate(terms):
        where = f"distill.terms[{i}]"
        if not isinstance(term, dict):
            raise ConfigError(f"{where}: expected a mapping like {{loss: nfd, student: fusion, teacher: a3}}, got {term!r}")
        if "pairs" in term and ("student" in term or "teacher" in term):
            raise ConfigError(f"{where}: give either 'pairs' or 'student'/'teacher', not both")
        if term.get("pairs") == AUTO:
            pairs = AUTO
        elif "pairs" in term:
            pairs = term["pairs"]
            if not isinstance(pairs, list) or not pairs or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(n, str) for n in p) for p in pairs
            ):
                raise ConfigError(f"{where}: pairs={pairs!r} is not a list of [student_tap, teacher_tap] or 'auto'")
            pairs = [tuple(p) for p in pairs]
        else:
            student, teacher = term.get("student"), term.get("teacher")
            if not isinstance(student, str) or not isinstance(teacher, str):
                raise ConfigError(f"{where}: needs 'student' and 'teacher' tap names (or 'pairs')")
            pairs = [(student, teacher)]
        spec = {k: v for k, v in term.items() if k not in ("student", "teacher", "pairs")}
        parsed.append((spec, pairs))
    return parsed


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
        """Build everything `cfg.distill` describes; tap names, pairs and adapters are checked before the
        teacher is built (see `segkd.engine.teacher.resolve_teacher`).

        The dry run reads the student's tap shapes from `student` or, when None, from `cfg.model` on the meta
        device (the Trainer builds the real one).
        """
        if cfg.distill is None:
            raise ConfigError(f"preset '{cfg.preset}' has no distill block (teacher + terms): see `segkd presets`")
        parsed = parse_terms(cfg.distill.terms)
        source = resolve_teacher(cfg, allow_random_teacher, teacher_size_from_checkpoint)  # reads, builds nothing
        student_size = size_hw(cfg.data.input_size)
        s_shapes = (student.tap_shapes(student_size) if student is not None
                    else probe_taps(config_to_dict(cfg)["model"], student_size)[0])
        t_shapes, t_default = probe_taps(source.model_cfg, source.input_size)
        s_arch, t_arch = cfg.model.arch, source.model_cfg["arch"]
        specs = []  # (loss spec, pairs, skipped): every tap checked before a weight is built or read
        for i, (spec, pairs) in enumerate(parsed):
            skipped = None
            if pairs == AUTO:
                pairs, skipped = auto_pairs(s_shapes, student_size, t_shapes, source.input_size)
                if not pairs:
                    raise ConfigError(f"distill.terms[{i}]: pairs: auto found no teacher tap at the stride of any "
                                      f"student tap ({s_arch}: {', '.join(s_shapes)}; {t_arch}: {', '.join(t_shapes)})")
            for s, t in pairs:
                check_tap(s_shapes, s, "student", s_arch, i)
                check_tap(t_shapes, t, "teacher", t_arch, i)
            specs.append((spec, pairs, skipped))
        seed_everything(cfg.train.seed)  # the adapters, then the teacher's random init (smoke tests)
        terms, adapters, seen = [], nn.ModuleDict(), {}
        term_defaults = {"ignore_index": cfg.data.ignore_index, "num_classes": cfg.model.num_classes}
        for i, (spec, pairs, skipped) in enumerate(specs):
            name, weight, loss = build_loss(spec, where=f"distill.terms[{i}]", defaults=term_defaults)
            seen[name] = seen.get(name, 0) + 1
            column = name if seen[name] == 1 else f"{name}_{seen[name]}"
            if not isinstance(loss, KDLoss):
                raise ConfigError(f"distill.terms[{i}]: '{name}' is not a KD loss (KD losses take student and teacher taps)")
            loss.term = column
            adapters[column] = nn.ModuleList(loss.build_adapter(s_shapes[s], t_shapes[t]) for s, t in pairs)
            terms.append(KDTerm(column, weight, loss, pairs, skipped))
        if cfg.distill.normalize:
            adapters["kd_scales"] = TermScales([t.name for t in terms], cfg.distill.normalize_steps)
        mean, std = ((source.mean, source.std) if source.mean is not None
                     else (t_default.get("mean", cfg.data.mean), t_default.get("std", cfg.data.std)))
        teacher = build_teacher(source, cfg.distill.teacher.weights, mean, std)
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
            auto = "" if term.skipped is None else (
                " (pairs: auto, by stride" + (f"; no teacher tap at the stride of {', '.join(term.skipped)})"
                                              if term.skipped else ")"))
            lines.append(f"{term.name} ×{term.weight:g}: {pairs}{auto} (adapter: {'/'.join(kinds)})")
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

