"""Crashes cost nothing: kill -9 during a checkpoint save, Ctrl-C, and a model that diverges on an epoch's last step."""

import csv
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segkd.config import load_config
from segkd.engine.checkpointing import resume_config
from segkd.engine.interrupt import StopRequest
from segkd.engine.trainer import Trainer, train
from segkd.errors import JobFailed

from .conftest import write_preset

HERE = Path(__file__).parent
ROOT = HERE.parents[1]

# Runs `segkd train` with atomic_save wrapped: on call number CALL it is killed with SIGKILL, either before the
# save starts or after a random share of the file's bytes went to the temporary file.
KILL_DURING_SAVE = """
import importlib.util, io, os, random, signal, sys
spec = importlib.util.spec_from_file_location("engine_conftest", {conftest!r})
sys.modules[spec.name] = module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)  # registers tiny_seg
import torch
from segkd.engine import run_writer as engine
from segkd.outputs import atomic_write
save, calls = engine.atomic_save, []
def killing_save(obj, path):
    calls.append(path)
    if len(calls) == {call}:
        if {phase!r} == "mid":
            buf = io.BytesIO()
            torch.save(obj, buf)
            data = buf.getvalue()
            with atomic_write(path) as f:
                f.write(data[: random.Random({seed}).randrange(1, len(data))])
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    return save(obj, path)
engine.atomic_save = killing_save
from segkd.cli import app
app(sys.argv[1:], prog_name="segkd")
"""

# A terminal's Ctrl-C: SIGINT to the whole process group (DataLoader workers included) after batch AT (counted
# over the run), and with SECOND a second one right after.
CTRL_C = """
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("engine_conftest", {conftest!r})
sys.modules[spec.name] = module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from segkd.engine import trainer as engine
init, seen = engine.Trainer.__init__, []
def init_with_ctrl_c(self, *args, **kwargs):
    init(self, *args, **kwargs)
    def press(t):
        seen.append(1)
        if len(seen) == {at}:
            os.killpg(0, signal.SIGINT)
            if {second}:
                os.killpg(0, signal.SIGINT)
    self.add_callback("on_train_batch_end", press)
engine.Trainer.__init__ = init_with_ctrl_c
from segkd.cli import app
app(sys.argv[1:], prog_name="segkd")
"""


def run_script(tmp_path, template, args, **fmt):
    script = tmp_path / "script.py"
    script.write_text(template.format(conftest=str(HERE / "conftest.py"), **fmt))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)


def assert_consistent(summary: dict) -> None:
    """best.pt and last.pt load, and best.pt is the epoch and score the summary names."""
    weights = Path(summary["last"]).parent
    last = torch.load(weights / "last.pt", weights_only=True)
    best = torch.load(weights / "best.pt", weights_only=True)
    assert last["epoch"] == summary["epochs"] and "epoch_step" not in last
    assert best["epoch"] == summary["best_epoch"] == last["best_epoch"]
    assert best["best_fitness"] == pytest.approx(summary["best_miou"]) and "optimizer" not in best
    assert not [p.name for p in weights.iterdir() if ".segkd-tmp-" in p.name]


# save calls: 1 epoch-1 last.pt, 2 epoch-1 best.pt, 3 epoch-2 last.pt, 4 epoch-2 best.pt or epoch-3 last.pt
@pytest.mark.parametrize("call,phase,seed", [(2, "before", 0), (2, "mid", 1), (3, "mid", 2), (4, "before", 3),
                                             (4, "mid", 4)])
def test_kill_9_during_a_save_then_resume_ends_with_both_checkpoints_consistent(tmp_path, voc_root, call, phase,
                                                                                 seed):
    preset = write_preset(tmp_path / "tiny.yaml", train={"epochs": 3})
    args = ["train", "--preset", str(preset), f"data.root={voc_root}", f"project={tmp_path / 'runs'}", "name=k"]
    proc = run_script(tmp_path, KILL_DURING_SAVE, args, call=call, phase=phase, seed=seed)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    weights = tmp_path / "runs" / "train" / "k" / "weights"
    if phase == "mid":
        assert [p for p in weights.iterdir() if ".segkd-tmp-" in p.name]  # the killed write's temp file
    summary = train(resume_config(weights / "last.pt"))
    assert_consistent(summary)
    with open(weights.parent / "results.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]


def test_ctrl_c_saves_at_the_step_boundary_prints_the_resume_command_and_resumes_exactly(tmp_path, voc_root):
    preset = write_preset(tmp_path / "tiny.yaml", data={"workers": 1})
    common = [f"data.root={voc_root}", f"project={tmp_path / 'runs'}"]
    straight = train(load_config(str(preset), common + ["name=straight"]))
    proc = run_script(tmp_path, CTRL_C, ["train", "--preset", str(preset), *common, "name=c"], at=6, second=False)
    last = tmp_path / "runs" / "train" / "c" / "weights" / "last.pt"
    assert proc.returncode == 130, proc.stderr
    assert "saving last.pt at the end of this step" in proc.stderr
    lines = " ".join(proc.stderr.split())
    assert f"interrupted at epoch 2, iteration 3: saved {last}; resume with: segkd train resume={last}" in lines
    assert "Traceback" not in proc.stderr
    saved = torch.load(last, weights_only=True)
    assert (saved["epoch"], saved["epoch_step"]) == (1, 3)  # the next step boundary

    resumed = train(resume_config(last))
    assert_consistent(resumed)
    a, b = torch.load(straight["last"], weights_only=True), torch.load(last, weights_only=True)
    for name, value in a["model"].items():
        torch.testing.assert_close(b["model"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert resumed["final"]["train/loss"] == pytest.approx(straight["final"]["train/loss"], rel=1e-5)


def test_a_second_ctrl_c_exits_at_once(tmp_path, voc_root):
    preset = write_preset(tmp_path / "tiny.yaml")
    args = ["train", "--preset", str(preset), f"data.root={voc_root}", f"project={tmp_path / 'runs'}", "name=c"]
    proc = run_script(tmp_path, CTRL_C, args, at=1, second=True)  # both before the next step boundary...
    assert proc.returncode == 130 and "error: interrupted" in proc.stderr, proc.stderr
    assert not (tmp_path / "runs" / "train" / "c" / "weights" / "last.pt").exists()  # ...so nothing was saved


def test_stop_request_asks_once_then_raises():
    asked, before = [], signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs as a background job
    with StopRequest(lambda: asked.append(1)) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and asked == [1]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_weights_that_blow_up_on_an_epochs_last_step_are_never_saved(tmp_path, voc_root):
    preset = write_preset(tmp_path / "tiny.yaml")
    cfg = load_config(str(preset), [f"data.root={voc_root}", f"project={tmp_path / 'runs'}", "name=d"])
    trainer, kept = Trainer(cfg), {}

    def blow_up(t):  # the last batch of epoch 2: |w| ~ 1e30 (finite, but its float32 norm overflows)
        if t.epoch == 1 and t.train_loader.sampler.epoch == 1 and not kept:
            kept.update(best=digest(t.weights_dir / "best.pt"), last=digest(t.weights_dir / "last.pt"))
        if t.epoch == 1 and len(kept) and t.global_step == 2 * len(t.train_loader):
            with torch.no_grad():
                t.model.head[2].weight.fill_(1e30)

    trainer.add_callback("on_train_batch_end", blow_up)
    with pytest.raises(JobFailed, match=r"model weight 'head.2.weight' is not finite epoch 2: not saved "
                                        r"\(.*weights keeps epoch 1\); lower train.lr \(resume=.*last.pt train.lr=X\)"):
        trainer.train()
    weights = trainer.weights_dir
    assert digest(weights / "best.pt") == kept["best"] and digest(weights / "last.pt") == kept["last"]


def test_resume_with_a_lower_lr_is_allowed_with_a_note(tmp_path, voc_root):
    import io

    from rich.console import Console

    preset = write_preset(tmp_path / "tiny.yaml", train={"epochs": 2})
    cfg = load_config(str(preset), [f"data.root={voc_root}", f"project={tmp_path / 'runs'}", "name=lr",
                                    "train.epochs=2"])
    trainer = Trainer(cfg)
    trainer.add_callback("on_fit_epoch_end", lambda t: t.stop.requested or setattr(t.stop, "requested", True))
    with pytest.raises(Exception, match="interrupted after epoch 1"):
        trainer.train()
    console = Console(file=io.StringIO(), width=300)
    resumed = Trainer(resume_config(trainer.weights_dir / "last.pt", {"train.lr": 0.003}), console=console)
    resumed.train()
    assert "note: train.lr changes from 0.03 to 0.003 on resume" in console.file.getvalue()
    assert torch.load(trainer.weights_dir / "last.pt", weights_only=True)["config"]["train"]["lr"] == 0.003
