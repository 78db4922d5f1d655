"""train.devices: what it asks for, the one-line refusals, and the torchrun command line of a relaunch."""

from __future__ import annotations

import re
import sys

import pytest
import torch
from typer.testing import CliRunner

from segkd.cli import app
from segkd.config import TrainConfig
from segkd.engine.launch import devices_to_launch, entry_point, torchrun_args
from segkd.errors import ConfigError

from .conftest import write_preset


@pytest.mark.parametrize("devices, expected", [(None, None), (1, None), (2, (2, None)), (3, (3, None))])
def test_a_count_starts_that_many_cpu_processes(devices, expected):
    assert devices_to_launch(TrainConfig(device="cpu", devices=devices)) == expected


def test_a_worker_never_relaunches(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert devices_to_launch(TrainConfig(device="cpu", devices=2)) is None


@pytest.mark.parametrize("devices, message", [
    (0, "train.devices=0: expected a process count N >= 1 or CUDA indices like 0,1,2,3"),
    ("0,x", "train.devices=0,x: expected a process count N >= 1 or CUDA indices like 0,1,2,3"),
    ("0,,1", "train.devices=0,,1: expected a process count"),
    ([0, -1], "train.devices=0,-1: expected a process count"),
    ("1,1", "train.devices=1,1: a device is listed twice"),
    ("0,1", "train.devices=0,1 names CUDA devices but train.device=cpu (use train.devices=N for N CPU processes)"),
])
def test_bad_device_lists_fail_naming_the_value(devices, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        devices_to_launch(TrainConfig(device="cpu", devices=devices))


def test_cuda_indices_need_those_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices_to_launch(TrainConfig(devices="1,0")) == (2, [1, 0])
    assert devices_to_launch(TrainConfig(devices=[1])) == (1, [1])
    with pytest.raises(ConfigError, match=r"^train.devices=0,2 needs 3 CUDA device\(s\) but this machine has 2$"):
        devices_to_launch(TrainConfig(devices="0,2"))
    with pytest.raises(ConfigError, match=r"^train.devices=4 needs 4 CUDA device"):
        devices_to_launch(TrainConfig(device="cuda", devices=4))


def test_relaunch_reruns_the_same_command_line():
    main = sys.modules["segkd"].__file__.replace("__init__.py", "__main__.py")
    assert entry_point([main, "train", "x=1"]) == ["-m", "segkd", "train", "x=1"]
    assert entry_point(["/bin/segkd", "train"]) == ["/bin/segkd", "train"]
    assert torchrun_args(4, 29400, ["/bin/segkd", "distill", "--preset", "p"]) == [
        "--nproc-per-node=4", "--nnodes=1", "--master-addr=127.0.0.1", "--master-port=29400", "--max-restarts=0",
        "/bin/segkd", "distill", "--preset", "p"]


def test_cli_refuses_a_bad_device_list_in_one_line(tmp_path, voc_root):
    preset = write_preset(tmp_path / "tiny.yaml")
    result = CliRunner().invoke(app, ["train", "--preset", str(preset), f"data.root={voc_root}",
                                      "train.devices=0,0"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: train.devices=0,0: a device is listed twice"
