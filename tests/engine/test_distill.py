"""The Distiller: teacher building and freezing, adapters from tap shapes, and distillation through the Trainer.

Two tiny families registered here, so every pair has mismatched channels and sizes:
`kd_tiny_student` (taps stage1 8ch @1/4, logits @1/4) and `kd_tiny_teacher` (stage1 12ch @1/2, stage2 24ch @1/4,
logits at the input size). tests/commands/test_distill.py imports this file by path for the same fixtures.
"""

from __future__ import annotations

import dataclasses
import io

from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from rich.console import Console
from torch import nn

from segkd.config import config_to_dict, load_config
from segkd.engine.distill import Distiller
from segkd.engine.teacher import freeze_teacher
from segkd.engine.trainer import Trainer
from segkd.errors import ConfigError
from segkd.losses.kd.adapters import FeatureEnhancement
from segkd.models import SegmentationModel, checkpoint_payload, create_model, list_models, load_checkpoint, register_model


class TinyStudent(SegmentationModel):
    """conv-BN-ReLU ×2 (stride 4) -> 1×1 head: stage1 8ch @1/4, logits @1/4."""

    size_divisor = 4

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Conv2d(8, num_classes, 1)  # slots: taps stage1 (the backbone), logits


class TinyTeacher(SegmentationModel):
    """Another family: stage1 12ch @1/2, stage2 24ch @1/4, logits at the input size."""

    size_divisor = 4

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.backbone = TwoStages()
        self.head = nn.Sequential(nn.Conv2d(24, num_classes, 1), nn.Upsample(scale_factor=4, mode="bilinear"))


class TwoStages(nn.Module):
    """Encoder: stage1 B×12×H/2×W/2, stage2 B×24×H/4×W/4."""

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 12, 3, 2, 1), nn.BatchNorm2d(12), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(12, 24, 3, 2, 1), nn.BatchNorm2d(24), nn.ReLU())

    def forward(self, x):
        s1 = self.stage1(x)
        return [s1, self.stage2(s1)]


if "kd_tiny_teacher" not in list_models():

    @register_model
    def kd_tiny_student(num_classes: int = 3) -> TinyStudent:
        return TinyStudent(num_classes)

    @register_model
    def kd_tiny_teacher(num_classes: int = 3) -> TinyTeacher:
        return TinyTeacher(num_classes)


def make_voc(root: Path, n: int = 6, size: int = 40) -> Path:
    """VOC layout, 4 train + 2 val images: a red disc (class 1) and a green bar (class 2) on dark noise."""
    rng = np.random.default_rng(0)
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    stems = [f"im{i}" for i in range(n)]
    for stem in stems:
        image = rng.integers(0, 50, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        cy, cx = rng.integers(8, size - 8, 2)
        cv2.circle(mask, (int(cx), int(cy)), 6, 1, -1)
        top = int(rng.integers(0, size - 6))
        mask[top : top + 5, :] = np.where(mask[top : top + 5, :] == 0, 2, mask[top : top + 5, :])
        image[mask == 1], image[mask == 2] = (40, 40, 220), (40, 220, 40)  # BGR on disk
        cv2.imwrite(str(root / "JPEGImages" / f"{stem}.png"), image)
        cv2.imwrite(str(root / "SegmentationClass" / f"{stem}.png"), mask)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(stems[:4]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(stems[4:]) + "\n")
    return root


BASE = {
    "model": {"arch": "kd_tiny_student", "num_classes": 3},
    "data": {"format": "voc", "input_size": 32, "classes": ["bg", "disc", "bar"], "mean": [0.5, 0.5, 0.5],
             "std": [0.5, 0.5, 0.5], "resize": "resize", "workers": 0},
    "train": {"epochs": 1, "batch_size": 2, "optimizer": "adam", "lr": 0.01, "scheduler": "constant",
              "device": "cpu", "seed": 0},
    "augment": [],
    "loss": [{"name": "ce", "weight": 1.0}],
}


def write_preset(path: Path, **sections) -> Path:
    """BASE with sections updated (`data={...}` merges, `distill=...` replaces) as a YAML file."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    for key, value in sections.items():
        raw[key] = {**raw[key], **value} if isinstance(raw.get(key), dict) else value
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    return make_voc(tmp_path_factory.mktemp("kdvoc"))


NFD_PKL = [
    {"loss": "nfd", "weight": 5.0, "pairs": [["stage1", "stage1"], ["stage1", "stage2"]]},
    {"loss": "pkl", "weight": 0.5, "student": "logits", "teacher": "logits"},
]


def teacher_preset(tmp_path: Path, arch: str = "kd_tiny_teacher", **data) -> Path:
    return write_preset(tmp_path / f"{arch}.yaml", model={"arch": arch}, data=data)


def teacher_checkpoint(tmp_path: Path, preset: Path) -> Path:
    cfg = load_config(str(preset))
    torch.manual_seed(1)
    model = create_model(cfg.model.arch, num_classes=cfg.model.num_classes)
    path = tmp_path / "teacher.pt"
    torch.save(checkpoint_payload(model, config_to_dict(cfg)), path)
    return path


def distill_preset(tmp_path: Path, teacher: dict, terms: list[dict] = NFD_PKL) -> Path:
    return write_preset(tmp_path / "kd.yaml", distill={"teacher": teacher, "terms": terms, "adapter_lr_mult": 2.0})


@pytest.fixture
def kd_setup(tmp_path, voc_root):
    t_preset = teacher_preset(tmp_path)
    weights = teacher_checkpoint(tmp_path, t_preset)
    preset = distill_preset(tmp_path, {"preset": str(t_preset), "weights": str(weights), "input_size": 64})
    cfg = load_config(str(preset), [f"data.root={voc_root}", f"project={tmp_path / 'runs'}"])
    return cfg, weights


def test_adapters_built_from_tap_shapes(kd_setup):
    cfg, _ = kd_setup
    d = Distiller.from_config(cfg)
    assert d.term_names == ["nfd", "pkl"]
    a1, a2 = d.adapters["nfd"]
    assert (a1.in_channels, a1.out_channels) == (8, 12) and (a2.in_channels, a2.out_channels) == (8, 24)
    assert isinstance(d.adapters["pkl"][0], nn.Identity)
    assert d.train_input_size == (64, 64) and d.student_size == (32, 32) and d.teacher_size == (64, 64)


def test_terms_are_weighted_and_finite(kd_setup):
    cfg, _ = kd_setup
    d = Distiller.from_config(cfg)
    student = create_model("kd_tiny_student", num_classes=3)
    images = torch.randn(2, 3, 64, 64)
    x_s = d.student_input(images)
    assert x_s.shape == (2, 3, 32, 32)
    out = d.student_module(student)(x_s)
    assert out.adapted["nfd"][1].shape == (2, 24, 8, 8)  # stage1 8ch adapted to the teacher's stage2 width
    terms = d(images, out.adapted)
    assert set(terms) == {"nfd", "pkl"}
    raw_pkl = d.terms[1].loss(student.forward_taps(x_s)[1]["logits"], d.teacher_taps(images)["logits"])
    assert terms["pkl"].item() == pytest.approx(0.5 * raw_pkl.item(), rel=1e-5)
    terms["nfd"].backward()
    assert d.adapters["nfd"][0].weight.grad is not None
    assert all(p.grad is None for p in d.teacher.parameters())


def test_teacher_frozen_and_stays_in_eval(kd_setup):
    cfg, _ = kd_setup
    d = Distiller.from_config(cfg)
    assert not d.teacher.training and not any(p.requires_grad for p in d.teacher.parameters())
    d.teacher.train()
    assert not d.teacher.training and not any(m.training for m in d.teacher.modules())
    bn = d.teacher.backbone.stage1[1]
    before = bn.running_mean.clone()
    d.teacher_taps(torch.randn(4, 3, 64, 64) * 5)
    assert torch.equal(bn.running_mean, before)


def test_freeze_teacher_on_plain_module():
    m = freeze_teacher(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)))
    m.train(True)
    assert not m[1].training and not m[0].weight.requires_grad


def test_unknown_tap_lists_available(kd_setup):
    cfg, _ = kd_setup
    cfg.distill.terms = [{"loss": "fitnet", "student": "stage1", "teacher": "stage9"}]
    with pytest.raises(ConfigError, match=r"teacher tap 'stage9' does not exist in kd_tiny_teacher "
                                          r"\(available: stage1, stage2, logits\)"):
        Distiller.from_config(cfg)
    cfg.distill.terms = [{"loss": "fitnet", "student": "neck", "teacher": "stage1"}]
    with pytest.raises(ConfigError, match=r"distill.terms\[0\]: student tap 'neck' does not exist in kd_tiny_student"):
        Distiller.from_config(cfg)


@pytest.mark.parametrize("term, message", [
    ({"loss": "nfd", "student": "stage1"}, r"needs 'student' and 'teacher'"),
    ({"loss": "nfd", "pairs": [["stage1"]]}, r"is not a list of \[student_tap, teacher_tap\]"),
    ({"loss": "nfd", "pairs": [["stage1", "stage1"]], "student": "x"}, r"either 'pairs' or 'student'"),
    ({"loss": "nfd", "student": "stage1", "teacher": "stage1", "temp": 2}, r"loss 'nfd' has no option 'temp'"),
    ({"loss": "ce", "student": "logits", "teacher": "logits"}, r"'ce' is not a KD loss"),
    ({"loss": "kl", "student": "stage1", "teacher": "stage1"}, r"student tap has 8 channels and teacher tap 12"),
])
def test_bad_terms(kd_setup, term, message):
    cfg, _ = kd_setup
    cfg.distill.terms = [term]
    with pytest.raises(ConfigError, match=message):
        Distiller.from_config(cfg)


def test_missing_teacher_weights_is_an_error(kd_setup):
    cfg, _ = kd_setup
    cfg.distill.teacher.weights = None
    with pytest.raises(ConfigError, match="distill.teacher.weights is not set"):
        Distiller.from_config(cfg)
    assert Distiller.from_config(cfg, allow_random_teacher=True).teacher_spec.source.endswith("(random init)")


def test_teacher_from_checkpoint_alone(kd_setup):
    cfg, weights = kd_setup
    cfg.distill.teacher.preset = None
    d = Distiller.from_config(cfg)
    assert d.teacher_arch == "kd_tiny_teacher"
    ref = load_checkpoint(weights)
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(d.teacher(x), ref(x))


def test_teacher_checkpoint_rebuilds_itself_at_its_own_input_size(kd_setup):
    cfg, _ = kd_setup
    cfg.distill.teacher.preset = "fastsegformer-p"  # a segkd checkpoint wins over the preset's model
    d = Distiller.from_config(cfg, teacher_size_from_checkpoint=True)
    assert d.teacher_arch == "kd_tiny_teacher"
    assert d.teacher_size == (32, 32) and cfg.distill.teacher.input_size == 32  # trained at 32, not the preset's 64


def test_teacher_with_other_classes_is_refused(kd_setup):
    cfg, weights = kd_setup
    cfg.model.num_classes = 5
    with pytest.raises(ConfigError, match=r"teacher.pt: the teacher has 3 classes, the student model.num_classes=5"):
        Distiller.from_config(cfg)


def test_teacher_renormalised(tmp_path, voc_root):
    t_preset = teacher_preset(tmp_path, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    preset = distill_preset(tmp_path, {"preset": str(t_preset), "weights": None})
    cfg = load_config(str(preset), [f"data.root={voc_root}"])  # student: mean 0.5, std 0.5
    d = Distiller.from_config(cfg, allow_random_teacher=True)
    raw = torch.rand(1, 3, 32, 32)
    assert torch.allclose(d.teacher_input((raw - 0.5) / 0.5), raw, atol=1e-6)
    assert d.train_input_size == (32, 32)


def test_distill_trains_adapters_not_teacher(kd_setup):
    cfg, _ = kd_setup
    d = Distiller.from_config(cfg)
    teacher_before = {k: v.clone() for k, v in d.teacher.state_dict().items()}
    adapters_before = {k: v.clone() for k, v in d.adapters.state_dict().items()}
    trainer = Trainer(cfg, "distill", d)
    for event, fns in d.callbacks().items():
        for fn in fns:
            trainer.add_callback(event, fn)
    summary = trainer.train()

    group = next(g for g in trainer.optimizer.param_groups if g["name"] == "adapters")
    assert group["lr_mult"] == 2.0
    assert {id(p) for p in group["params"]} == {id(p) for p in d.adapters.parameters()}
    assert any(not torch.equal(adapters_before[k], v) for k, v in d.adapters.state_dict().items())
    assert all(torch.equal(teacher_before[k], v) for k, v in d.teacher.state_dict().items())
    assert d.teacher_metrics is not None and 0.0 <= d.teacher_metrics["mIoU"] <= 1.0

    header = Path(summary["results"]).read_text().splitlines()[0].split(",")
    assert {"train/ce", "train/nfd", "train/pkl"} <= set(header)
    last = torch.load(summary["last"], weights_only=True)
    assert set(last["distiller"]) == set(d.adapters.state_dict())
    student = load_checkpoint(summary["last"])  # student only: rebuilds and loads strictly
    assert student.arch == "kd_tiny_student"
    assert not any(k.startswith(("teacher", "adapters")) for k in last["model"])


def run_distill(cfg, log: io.StringIO | None = None):
    d = Distiller.from_config(cfg)
    trainer = Trainer(cfg, "distill", d, console=Console(file=log, width=400) if log is not None else None)
    for event, fns in d.callbacks().items():
        for fn in fns:
            trainer.add_callback(event, fn)
    return d, trainer, trainer.train()


def test_kd_scale_reported_at_the_first_step(kd_setup):
    cfg, _ = kd_setup
    cfg.distill.terms[0]["weight"] = 500.0  # NFD ×500 dwarfs CE
    log = io.StringIO()
    run_distill(cfg, log)
    text = log.getvalue()
    line = next(x for x in text.splitlines() if x.startswith("KD scale at the first step: hard-label loss "))
    assert " · nfd " in line and "×500 = " in line and " · pkl " in line
    assert "warning: KD term nfd starts over 20× the hard-label loss and drowns it: set distill.normalize=true" in text


def test_normalize_divides_each_term_by_its_starting_value(kd_setup):
    cfg, _ = kd_setup
    cfg.distill.normalize, cfg.distill.normalize_steps = True, 1
    seen = []
    d = Distiller.from_config(cfg)
    trainer = Trainer(cfg, "distill", d)
    trainer.add_callback("on_train_batch_end", lambda t: seen.append(dict(t.batch_losses)))
    summary = trainer.train()
    assert seen[0]["nfd"] == pytest.approx(5.0) and seen[0]["pkl"] == pytest.approx(0.5)  # weight × raw / raw
    scales = d.adapters["kd_scales"]
    assert len(seen) > 1 and int(scales.count) == 1  # frozen after normalize_steps batches
    assert seen[1]["nfd"] != pytest.approx(5.0)
    last = torch.load(summary["last"], weights_only=True)
    assert torch.equal(last["distiller"]["kd_scales.total"], scales.total)  # a resumed run divides alike


def test_segformer_teacher_for_another_family(tmp_path, voc_root):
    """A real family as teacher: SegFormer-B0 at 64 px (logits @1/4 = 16) for the tiny student at 32 px."""
    t_preset = teacher_preset(tmp_path, arch="segformer_b0")
    terms = [
        {"loss": "sekd_context", "weight": 0.5, "pairs": [["stage1", "stage1"], ["stage1", "stage2"]]},
        {"loss": "sekd_texture", "weight": 1.0, "pairs": [["stage1", "embed1"]]},
        {"loss": "cwd", "weight": 3.0, "student": "logits", "teacher": "logits"},
        {"loss": "at", "weight": 1.0, "student": "stage1", "teacher": "fusion"},
    ]
    preset = distill_preset(tmp_path, {"preset": str(t_preset), "weights": None, "input_size": 64}, terms)
    cfg = load_config(str(preset), [f"data.root={voc_root}"])
    d = Distiller.from_config(cfg, allow_random_teacher=True)
    fef = d.adapters["sekd_context"][1]
    assert isinstance(fef, FeatureEnhancement) and fef.expand[0].out_channels == 64  # B0 stage2 width
    assert isinstance(d.adapters["sekd_texture"][0], nn.Conv2d)
    images = torch.randn(2, 3, 64, 64)
    out = d.student_module(create_model("kd_tiny_student", num_classes=3))(d.student_input(images))
    terms = d(images, out.adapted)
    assert set(terms) == {"sekd_context", "sekd_texture", "cwd", "at"}
    sum(terms.values()).backward()
    assert all(torch.isfinite(t) for t in terms.values())


def test_segformer_teacher_for_fastsegformer_student(tmp_path, voc_root):
    """Real families both ways round: SegFormer-B0 (64 px) teaching FastSegFormer-P (64 px), the preset's pairs."""
    t_preset = teacher_preset(tmp_path, arch="segformer_b0")
    terms = [
        {"loss": "nfd", "weight": 5.0, "pairs": [["stage1", "stage1"], ["stage4", "stage4"], ["neck", "stage4"],
                                                 ["fusion", "fusion"], ["detail", "stage1"]]},
        {"loss": "pkl", "weight": 0.5, "student": "logits", "teacher": "logits"},
    ]
    preset = distill_preset(tmp_path, {"preset": str(t_preset), "weights": None}, terms)
    cfg = load_config(str(preset), [f"data.root={voc_root}", "model.arch=fastsegformer_p", "data.input_size=64"])
    d = Distiller.from_config(cfg, allow_random_teacher=True)
    channels = [(a.in_channels, a.out_channels) for a in d.adapters["nfd"]]
    assert channels == [(64, 32), (512, 256), (512, 256), (512, 256), (32, 32)]
    student = create_model("fastsegformer_p", num_classes=3)
    images = torch.randn(2, 3, 64, 64)
    module = d.student_module(student)
    out = module(d.student_input(images))  # logits 64×64; teacher's 16×16 resized up
    terms = d(images, out.adapted)
    (sum(terms.values()) + out.logits.mean()).backward()
    assert student.backbone.parameters().__next__().grad is not None
    assert all(torch.isfinite(t) for t in terms.values())
    # what DDP needs: every parameter the outputs depend on gets a gradient from the losses (the stage3 norm,
    # behind a tap no term reads, must not be reachable from the outputs)
    with_grad = {id(p) for p in module.parameters() if p.grad is not None}
    assert reachable_parameters([out.logits, *[t for ts in out.adapted.values() for t in ts]]) == with_grad
    assert student.backbone.out_norms[2].weight.grad is None


def reachable_parameters(outputs: list[torch.Tensor]) -> set[int]:
    """ids of the leaf tensors (parameters) that the autograd graph of `outputs` reaches."""
    found, seen = set(), set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):
            found.add(id(fn.variable))
        stack.extend(f for f, _ in fn.next_functions if f is not None)
    return found



def test_two_seeded_distill_runs_give_bitwise_equal_last_pt(kd_setup):
    """Adapters (NFD), teacher and student are built after seeding: the global RNG state before does not matter."""
    cfg, _ = kd_setup
    lasts = []
    torch.use_deterministic_algorithms(True)
    try:
        for name, noise in (("a", 123), ("b", 456)):
            torch.manual_seed(noise)  # a different global RNG state before each run
            run_cfg = dataclasses.replace(cfg, name=name)
            summary = Trainer(run_cfg, "distill", Distiller.from_config(run_cfg)).train()
            lasts.append(torch.load(summary["last"], weights_only=True))
    finally:
        torch.use_deterministic_algorithms(False)
    a, b = lasts
    for key in ("model", "distiller"):
        assert a[key].keys() == b[key].keys()
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}.{name}"
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
