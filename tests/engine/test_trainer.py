"""The training loop end to end on the tiny VOC tree: outputs, best by mIoU, AMP/EMA/accumulation, freezing,
NaN guard, distillation hooks, and exact resume after SIGKILL."""

from __future__ import annotations

import csv
import io
import math
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from segkd.config import load_config
from segkd.engine.adapted_student import AdaptedStudent
from segkd.engine import ema as ema_module
from segkd.engine.callbacks import EVENTS
from segkd.engine.checkpointing import resume_config
from segkd.engine.evaluator import evaluate_model
from segkd.engine.loaders import open_split
from segkd.engine.metrics import ConfusionMatrix
from segkd.engine.results import tensorboard_available
from segkd.engine.trainer import Trainer, train
from segkd.errors import ConfigError, JobFailed
from segkd.losses import list_losses, register_loss
from segkd.models import create_model, list_models, load_checkpoint, read_checkpoint

from .conftest import write_preset

HERE = Path(__file__).parent


def make_cfg(tmp_path, voc_root, overrides=(), **sections):
    preset = write_preset(tmp_path / "tiny.yaml", **sections)
    return load_config(str(preset), [f"data.root={voc_root}", f"project={tmp_path / 'runs'}", "name=t",
                                     *overrides])


def run(tmp_path, voc_root, overrides=(), **sections) -> Trainer:
    trainer = Trainer(make_cfg(tmp_path, voc_root, overrides, **sections))
    trainer.train()
    return trainer


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_folder_holds_config_weights_results_and_plots(tmp_path, voc_root):
    events = []
    cfg = make_cfg(tmp_path, voc_root)
    trainer = Trainer(cfg)
    for event in EVENTS:
        trainer.add_callback(event, lambda t, e=event: events.append(e))
    summary = trainer.train()

    run_dir = tmp_path / "runs" / "train" / "t"
    assert summary["save_dir"] == str(run_dir) and summary["best_epoch"] in (1, 2)
    assert (run_dir / "config.yaml").is_file()
    saved = load_config(str(run_dir / "config.yaml"))
    assert saved.resume is None and saved.data.classes == ["background", "red", "green"]

    rows = read_csv(run_dir / "results.csv")
    assert list(rows[0]) == ["epoch", "lr", "train/ce", "train/loss", "val/mIoU", "val/aAcc", "val/mPA",
                             "val/mPrecision", "val/mDice", "val/fwIoU", "time", "elapsed"]
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["train/loss"]) < float(rows[0]["train/loss"])
    assert summary["best_miou"] == pytest.approx(max(float(r["val/mIoU"]) for r in rows), abs=1e-6)
    for name in ("loss.png", "metrics.png", "lr.png"):
        assert (run_dir / "plots" / name).read_bytes()[:4] == b"\x89PNG"

    last = torch.load(run_dir / "weights" / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == 8  # 8 images / batch 2 = 4 steps per epoch
    assert {"optimizer", "scheduler", "scaler", "rng", "best_fitness"} <= set(last)
    assert last["classes"] == ["background", "red", "green"] and len(last["palette"]) == 3
    best = read_checkpoint(run_dir / "weights" / "best.pt")
    assert "optimizer" not in best and best["epoch"] == summary["best_epoch"]

    assert events[0] == "on_train_start" and events[-1] == "on_train_end"
    epoch = events[1: events.index("on_fit_epoch_end") + 1]
    assert epoch == ["on_train_epoch_start"] + ["on_train_batch_end"] * 4 + [
        "on_train_epoch_end", "on_model_save", "on_fit_epoch_end"]


def test_validation_is_what_eval_of_best_pt_reproduces(tmp_path, voc_root):
    trainer = run(tmp_path, voc_root)
    rows = read_csv(trainer.save_dir / "results.csv")
    best_row = rows[trainer.best_epoch - 1]
    cfg = trainer.cfg
    metrics = evaluate_model(load_checkpoint(trainer.save_dir / "weights" / "best.pt"),
                             open_split(cfg.data, "val", 3), cfg.data, batch_size=2, absent=cfg.eval.absent)
    assert metrics.mIoU == pytest.approx(float(best_row["val/mIoU"]), abs=1e-6)


def fake_metrics(miou: float):
    metrics = ConfusionMatrix.from_matrix(np.eye(3, dtype=np.int64)).compute()
    metrics.mIoU = miou
    return metrics


def test_best_pt_is_chosen_by_miou_not_loss(tmp_path, voc_root, monkeypatch):
    scores = iter([0.5, 0.7, 0.6])
    monkeypatch.setattr(Trainer, "validate", lambda self: fake_metrics(next(scores)))
    trainer = run(tmp_path, voc_root, train={"epochs": 3})
    losses = [float(r["train/loss"]) for r in read_csv(trainer.save_dir / "results.csv")]
    assert losses[2] < losses[1]  # the last epoch has the lowest loss but not the best mIoU
    best = read_checkpoint(trainer.save_dir / "weights" / "best.pt")
    assert best["epoch"] == 2 and best["best_fitness"] == pytest.approx(0.7)
    assert trainer.summary["best_epoch"] == 2


def test_val_interval_leaves_blank_cells_but_always_validates_the_last_epoch(tmp_path, voc_root):
    trainer = run(tmp_path, voc_root, train={"epochs": 3, "val_interval": 2})
    rows = read_csv(trainer.save_dir / "results.csv")
    assert [r["val/mIoU"] != "" for r in rows] == [False, True, True]


def test_accumulation_clipping_ema_and_bf16_autocast(tmp_path, voc_root, monkeypatch):
    monkeypatch.setattr(ema_module, "HORIZON_SHARE", 10.0)  # keep decay 0.9 in this 4-step run (test_plan: the cap)
    trainer = run(tmp_path, voc_root, train={
        "accumulate": 3, "clip_grad": 1.0, "ema": True, "ema_decay": 0.9, "amp": True,
        "scheduler": "warm_cosine", "sched_step": "epoch", "warmup_epochs": 1, "epochs": 2})
    assert trainer.precision.name == "bf16"
    assert trainer.global_step == 2 * 2  # 4 batches per epoch, a step every 3 and on the last one
    last = torch.load(trainer.save_dir / "weights" / "last.pt", weights_only=True)
    assert last["ema"]["updates"] == 4
    ema_w, raw_w = last["model"]["head.2.weight"], last["train_model"]["head.2.weight"]
    assert not torch.equal(ema_w, raw_w)  # validation and best.pt use the EMA weights
    assert torch.equal(ema_w, trainer.ema.module.head[2].weight)
    assert last["scheduler"]["t"] == 1.0 and trainer.scheduler.lr == pytest.approx(0.03)  # warm-up done


def test_channels_last_trains_the_same_model_in_nhwc(tmp_path, voc_root):
    seen = []
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    sgd = {"epochs": 1, "optimizer": "sgd"}  # Adam would blow rounding noise up to lr-sized steps (see below)
    plain = run(tmp_path / "a", voc_root, train=sgd)
    trainer = Trainer(make_cfg(tmp_path / "b", voc_root, ["train.channels_last=true"], train=sgd))
    trainer.add_callback("on_train_batch_end", lambda t: seen.append(
        t.model.head[0].weight.is_contiguous(memory_format=torch.channels_last)))
    trainer.train()
    assert seen and all(seen)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # the same steps: NHWC changes the summation order only (a conv bias in front of
        # BatchNorm gets only rounding noise as its gradient, which Adam would normalise into a full step)
        a, b = (load_checkpoint(t.save_dir / "weights" / "last.pt").eval()(x) for t in (plain, trainer))
    torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3)


def backbone_snapshots(trainer: Trainer) -> dict:
    """The backbone's conv weights at the start and after each epoch, once the trainer has run."""
    seen = {}
    snap = lambda t: {k: v.clone() for k, v in t.model.backbone.state_dict().items() if "weight" in k}  # noqa: E731
    trainer.add_callback("on_train_start", lambda t: seen.setdefault("start", snap(t)))
    trainer.add_callback("on_train_epoch_end", lambda t: seen.setdefault(t.epoch, snap(t)))
    trainer.train()
    return seen


def test_a_loaded_backbone_is_frozen_for_freeze_epochs_then_trained(tmp_path, voc_root):
    torch.save(create_model("tiny_seg").backbone.state_dict(), tmp_path / "backbone.pth")
    log = io.StringIO()
    cfg = make_cfg(tmp_path, voc_root, [f"model.backbone_weights={tmp_path / 'backbone.pth'}"],
                   train={"freeze_epochs": 1, "epochs": 2})
    trainer = Trainer(cfg, console=Console(file=log, width=300))
    seen = backbone_snapshots(trainer)
    assert all(torch.equal(seen["start"][k], seen[0][k]) for k in seen[0])
    assert not all(torch.equal(seen[0][k], seen[1][k]) for k in seen[1])
    assert all(p.requires_grad for p in trainer.model.backbone.parameters())
    plan = [line for line in log.getvalue().splitlines() if line.startswith("plan:")]
    assert plan == ["plan: 2 epochs × 4 steps, poly per step · peak 0.03 at epoch 0, last 0.00546 · "
                    "backbone frozen in epochs 1-1"]


def test_a_random_backbone_is_never_frozen(tmp_path, voc_root):
    log = io.StringIO()
    trainer = Trainer(make_cfg(tmp_path, voc_root, train={"freeze_epochs": 1, "epochs": 2}),
                      console=Console(file=log, width=300))
    seen = backbone_snapshots(trainer)
    assert not all(torch.equal(seen["start"][k], seen[0][k]) for k in seen[0])  # trained from the first epoch
    assert "note: train.freeze_epochs=1 skipped: the backbone is random" in log.getvalue()


if "nan_at_step" not in list_losses():

    @register_loss("nan_at_step")
    class NaNAtStep(nn.Module):
        """CE until call `step`, then NaN."""

        def __init__(self, step: int = 5):
            super().__init__()
            self.step, self.calls = step, 0

        def forward(self, logits, target):
            self.calls += 1
            loss = nn.functional.cross_entropy(logits, target.long())
            return loss * float("nan") if self.calls >= self.step else loss


def test_nan_loss_fails_naming_the_term_epoch_and_iteration(tmp_path, voc_root):
    loss = [{"name": "ce"}, {"name": "nan_at_step", "weight": 0.5, "step": 6}]
    with pytest.raises(JobFailed, match=r"loss term 'nan_at_step' is nan at epoch 2, iteration 2, 1 non-finite "
                                        r"step\(s\) in a row \(train.nan_patience=1\): lower train.lr"):
        run(tmp_path, voc_root, ["train.nan_patience=1"], loss=loss)


def test_non_finite_steps_are_skipped_with_a_warning_until_the_patience_runs_out(tmp_path, voc_root):
    loss = [{"name": "ce"}, {"name": "nan_at_step", "weight": 0.5, "step": 6}]  # 4 steps/epoch: steps 6-8 NaN
    console = Console(file=io.StringIO(), width=300)
    trainer = Trainer(make_cfg(tmp_path, voc_root, loss=loss), console=console)
    trainer.train()
    log = console.file.getvalue()
    assert "loss term 'nan_at_step' is nan at epoch 2, iteration 2: step skipped (1/10 in a row)" in log
    assert "(3/10 in a row)" in log and trainer.divergence.skipped == 3
    assert math.isfinite(trainer.results["train/loss"])  # the mean of the good step only
    assert read_checkpoint(trainer.save_dir / "weights" / "last.pt")["epoch"] == 2


def test_a_run_that_fails_before_saving_removes_its_run_folder(tmp_path, voc_root):
    with pytest.raises(JobFailed, match=r"is nan at epoch 1, iteration 1"):
        run(tmp_path, voc_root, ["train.nan_patience=1"], loss=[{"name": "nan_at_step", "step": 1}])
    assert not (tmp_path / "runs" / "train" / "t").exists()


def test_checkpoints_keep_the_data_root_as_an_absolute_path(tmp_path, voc_root, monkeypatch):
    monkeypatch.chdir(voc_root.parent)
    trainer = run(tmp_path, voc_root.name, train={"epochs": 1})
    assert read_checkpoint(trainer.weights_dir / "last.pt")["config"]["data"]["root"] == str(voc_root.resolve())


def test_initial_weights_and_backbone_weights_come_from_local_files(tmp_path, voc_root):
    torch.manual_seed(123)
    source = create_model("tiny_seg", num_classes=3)
    torch.save(source.backbone.state_dict(), tmp_path / "backbone.pth")
    torch.save(source.state_dict(), tmp_path / "full.pth")  # a foreign (plain) state dict
    trainer = Trainer(make_cfg(tmp_path, voc_root, [f"model.backbone_weights={tmp_path / 'backbone.pth'}"]))
    trainer.setup()
    assert torch.equal(trainer.model.backbone[0].weight, source.backbone[0].weight)
    assert not torch.equal(trainer.model.head[0].weight, source.head[0].weight)
    trainer = Trainer(make_cfg(tmp_path, voc_root, [f"model.weights={tmp_path / 'full.pth'}"]))
    trainer.setup()
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in trainer.model.state_dict().items())


def test_missing_data_root_is_a_config_error(tmp_path):
    cfg = load_config(str(write_preset(tmp_path / "tiny.yaml")), [f"project={tmp_path}"])
    with pytest.raises(ConfigError, match=r"data.root is not set"):
        train(cfg)


@pytest.mark.skipif(tensorboard_available(), reason="tensorboard is installed")
def test_tensorboard_missing_is_a_warning_not_a_failure(tmp_path, voc_root):
    console = Console(file=io.StringIO(), width=200)
    cfg = make_cfg(tmp_path, voc_root, train={"epochs": 1, "tensorboard": True})
    Trainer(cfg, console=console).train()
    log = console.file.getvalue()
    assert "train.tensorboard=true but the tensorboard package is not installed" in log
    assert "epoch 1/1" in log and "tiny_seg" in log


class FakeDistiller:
    """The Distiller contract in miniature: one adapter, one weighted term, loader size = student size."""

    def __init__(self):
        self.adapters = nn.ModuleDict({"fake_kd": nn.ModuleList([nn.Conv2d(8, 4, 1)])})
        self.train_input_size = (32, 32)
        self.inputs, self.masks = [], []

    def to(self, device):
        self.adapters.to(device)
        return self

    def student_input(self, images):
        self.inputs.append(tuple(images.shape))
        return images

    def student_module(self, student):
        return AdaptedStudent(student, self.adapters, {"fake_kd": ["stage1"]})

    def __call__(self, images, adapted, masks=None):
        self.masks.append(None if masks is None else tuple(masks.shape))
        return {"fake_kd": 0.1 * adapted["fake_kd"][0].pow(2).mean()}


def test_distiller_terms_adapters_and_kd_batch_size(tmp_path, voc_root):
    distiller = FakeDistiller()
    before = distiller.adapters["fake_kd"][0].weight.clone()
    cfg = make_cfg(tmp_path, voc_root, distill={"batch_size": 4, "terms": [{"loss": "fake"}]})
    summary = Trainer(cfg, "distill", distiller).train()
    run_dir = Path(summary["save_dir"])
    assert run_dir.parent.name == "distill"
    assert set(distiller.inputs) == {(4, 3, 32, 32)}  # distill.batch_size wins over train.batch_size
    assert set(distiller.masks) == {(4, 32, 32)}  # the batch's labels reach the distiller
    assert list(read_csv(run_dir / "results.csv")[0])[:5] == ["epoch", "lr", "train/ce", "train/fake_kd",
                                                               "train/loss"]
    last = torch.load(run_dir / "weights" / "last.pt", weights_only=True)
    assert not torch.equal(last["distiller"]["fake_kd.0.weight"], before)  # the adapter trained
    assert [g["name"] for g in last["optimizer"]["param_groups"]] == ["backbone", "head", "adapters"]
    assert "distiller" not in read_checkpoint(run_dir / "weights" / "best.pt")


@pytest.mark.skipif("fastsegformer_p" not in list_models(), reason="fastsegformer_p not registered yet")
def test_fastsegformer_p_trains_one_epoch(tmp_path, voc_root):
    trainer = run(tmp_path, voc_root, model={"arch": "fastsegformer_p", "num_classes": 3},
                  data={"input_size": 64, "images": 2}, train={"epochs": 1, "batch_size": 2})
    assert math.isfinite(trainer.results["train/loss"])
    assert load_checkpoint(trainer.save_dir / "weights" / "best.pt").arch == "fastsegformer_p"


# -- exact resume after SIGKILL --------------------------------------------------------------------------
KILLER = """
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("engine_conftest", {conftest!r})
sys.modules[spec.name] = module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)  # registers tiny_seg
from segkd.engine import trainer as engine
init = engine.Trainer.__init__
def init_with_kill(self, *args, **kwargs):
    init(self, *args, **kwargs)
    kill = lambda t: t.epoch + 1 == {kill_after} and os.kill(os.getpid(), signal.SIGKILL)
    self.add_callback("on_model_save", kill)
engine.Trainer.__init__ = init_with_kill
from segkd.cli import app
app(sys.argv[1:], prog_name="segkd")
"""


def test_resume_after_sigkill_ends_with_the_same_weights(tmp_path, voc_root):
    """2 epochs uninterrupted == killed (SIGKILL) right after epoch 1's last.pt, then resumed."""
    preset = write_preset(tmp_path / "tiny.yaml", train={"ema": True, "ema_decay": 0.9},
                          data={"workers": 1})
    common = [f"data.root={voc_root}", f"project={tmp_path / 'runs'}"]
    straight = train(load_config(str(preset), common + ["name=straight"]))

    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(conftest=str(HERE / "conftest.py"), kill_after=1))
    proc = subprocess.run([sys.executable, str(script), "train", "--preset", str(preset), *common, "name=killed"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    killed_dir = tmp_path / "runs" / "train" / "killed"
    assert len(read_csv(killed_dir / "results.csv")) == 1
    last = killed_dir / "weights" / "last.pt"
    assert torch.load(last, weights_only=True)["epoch"] == 1

    resumed = train(resume_config(last))
    assert resumed["save_dir"] == str(killed_dir.resolve())
    a = torch.load(straight["last"], weights_only=True)
    b = torch.load(last, weights_only=True)
    assert b["epoch"] == 2
    for key in ("model", "train_model"):
        for name, value in a[key].items():
            torch.testing.assert_close(b[key][name], value, rtol=1e-5, atol=1e-6, msg=f"{key}.{name}")
    rows_a, rows_b = read_csv(Path(straight["results"])), read_csv(killed_dir / "results.csv")
    assert [r["epoch"] for r in rows_b] == ["1", "2"]
    for ra, rb in zip(rows_a, rows_b):
        assert float(ra["train/loss"]) == pytest.approx(float(rb["train/loss"]), rel=1e-5)
        assert ra["val/mIoU"] == rb["val/mIoU"]
