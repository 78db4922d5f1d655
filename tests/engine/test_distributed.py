"""Two CPU processes on gloo, started by torchrun (directly, or through train.devices=2): one run folder, the
reduced val mIoU equal to a single-process `segkd eval` of best.pt, the KD adapters' gradients equal on both
ranks, and a failure on one rank ending both with its one-line message. Then, in one process, the pieces those
runs rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from torch import nn

from segkd.commands.common import run_guarded
from segkd.engine import distributed
from segkd.engine.distributed import first_to_fail, reduce_mean, wrap_ddp
from segkd.engine.evaluator import eval_config, run_eval
from segkd.engine.launch import free_port
from segkd.errors import ConfigError, PeerFailed

from .conftest import write_preset
from .test_distill import distill_preset, make_voc, teacher_checkpoint, teacher_preset

WORKER = Path(__file__).with_name("ddp_worker.py")
TIMEOUT = 150  # seconds; a hang fails the test instead of the CI job


def run_worker(args: list[str], tmp_path: Path, torchrun: bool = False, **env: str) -> subprocess.CompletedProcess:
    launcher = [sys.executable]
    if torchrun:
        launcher += ["-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
                     f"--master-port={free_port()}"]
    environ = os.environ | {"OMP_NUM_THREADS": "1", "CI": "1"} | env
    return subprocess.run([*launcher, str(WORKER), *args, "--json"], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=tmp_path, env=environ)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def assert_one_run_with_eval_equal(proc: subprocess.CompletedProcess, runs: Path, command: str) -> dict:
    """One run folder with best.pt, and `segkd eval` of best.pt (one process) == the run's val mIoU."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # rank 0's document only: a second one would not parse
    assert [p.name for p in (runs / command).iterdir()] == ["ddp"]
    assert sorted(p.name for p in (runs / command / "ddp" / "weights").iterdir()) == [".segkd-outputs", "best.pt", "last.pt"]
    best = Path(summary["best"])
    cfg = eval_config(best, [f"project={runs.parent / 'eval_runs'}"])
    metrics, _ = run_eval(cfg, best, split="val", batch_size=2)
    assert metrics.mIoU == summary["best_miou"]  # exactly: same batches, one all-reduced confusion matrix
    return summary


def test_train_devices_2_relaunches_under_torchrun_and_writes_one_run(tmp_path, voc_root):
    preset = write_preset(tmp_path / "tiny.yaml")
    runs = tmp_path / "runs"
    proc = run_worker(["train", "--preset", str(preset), f"data.root={voc_root}", f"project={runs}", "name=ddp",
                       "train.devices=2"], tmp_path)
    assert "batch 2 per process × 2 processes = 4 global (lr 0.03 not scaled)" in proc.stderr
    summary = assert_one_run_with_eval_equal(proc, runs, "train")
    last = torch.load(summary["last"], weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == 4  # 8 train images / global batch 4 = 2 steps per epoch
    assert error_lines(proc) == []


def test_distill_under_torchrun_syncs_adapter_gradients(tmp_path):
    voc = make_voc(tmp_path / "voc")
    t_preset = teacher_preset(tmp_path)
    weights = teacher_checkpoint(tmp_path, t_preset)
    preset = distill_preset(tmp_path, {"preset": str(t_preset), "weights": str(weights), "input_size": 64})
    runs = tmp_path / "runs"
    proc = run_worker(["distill", "--preset", str(preset), f"data.root={voc}", f"project={runs}", "name=ddp",
                       "train.epochs=3"],  # 3 steps: DDP notices a wrong set of used parameters at the 3rd
                      tmp_path, torchrun=True, SEGKD_TEST_GRADS_DIR=str(tmp_path))
    assert_one_run_with_eval_equal(proc, runs, "distill")
    g0, g1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert set(g0) == set(g1) and any(k.startswith("nfd.") for k in g0)  # NFD's 1×1 adapters
    for name, grad in g0.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(g1[name], grad, rtol=0, atol=0, msg=name)


def test_failure_on_rank_1_ends_both_ranks_with_its_one_line_message(tmp_path, voc_root):
    preset = write_preset(tmp_path / "tiny.yaml")
    proc = run_worker(["train", "--preset", str(preset), f"data.root={voc_root}", f"project={tmp_path / 'runs'}",
                       "train.devices=2"], tmp_path, SEGKD_TEST_FAIL_RANK="1")
    assert proc.returncode == 1
    assert error_lines(proc) == ["error: rank 1: injected failure on rank 1"]
    assert "Traceback" not in proc.stderr


# -- in one process: the pieces the spawned runs rely on -------------------------------------------------
def test_only_the_first_failing_rank_keeps_its_error(monkeypatch):
    @distributed.silence_echoed_failures
    def job():
        raise RuntimeError("Connection closed by peer")

    monkeypatch.setattr(distributed, "world", lambda: (0, 2))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 0)
    monkeypatch.setattr(distributed, "first_to_fail", lambda: True)
    with pytest.raises(RuntimeError, match="Connection closed"):
        job()
    monkeypatch.setattr(distributed, "first_to_fail", lambda: False)
    with pytest.raises(PeerFailed, match="rank 0 stopped: another rank failed first"):
        job()


def test_cli_exits_silently_on_peer_failed(capsys):
    def main():
        raise PeerFailed("rank 0 stopped: another rank failed first")

    with pytest.raises(typer.Exit) as exit_:
        run_guarded(main)()
    assert exit_.value.exit_code == 1
    assert capsys.readouterr().err == ""


def test_one_process_needs_no_process_group(colour_net):
    assert not torch.distributed.is_initialized()
    assert wrap_ddp(colour_net, torch.device("cpu")) is colour_net
    assert reduce_mean({"loss": 0.5}) == {"loss": 0.5}
    assert first_to_fail()


def test_sync_bn_converts_batchnorm_on_cuda_and_refuses_the_cpu(monkeypatch):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    assert distributed.convert_sync_bn(model, torch.device("cpu")) is model  # one process: nothing to sync
    monkeypatch.setattr(distributed, "world", lambda: (0, 2))
    with pytest.raises(ConfigError, match=r"^train.sync_bn=true needs CUDA devices"):
        distributed.convert_sync_bn(model, torch.device("cpu"))
    converted = distributed.convert_sync_bn(model, torch.device("cuda", 0))
    assert isinstance(converted[1], nn.SyncBatchNorm)
    assert set(converted.state_dict()) == set(model.state_dict())  # best.pt loads into the plain model
