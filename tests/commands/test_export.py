"""`segkd export` end to end: artifacts, verification lines, next commands, a broken export, errors."""

import json

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

import segkd.deploy.artifacts as artifacts
from segkd.cli import app
from segkd.deploy.export import export_onnx, read_meta
from segkd.models import create_model

from testkit import flat, load_test_module

fx = load_test_module("deploy_fixtures", "deploy/conftest.py")  # registers `deploy_tiny`

runner = CliRunner()


def test_fp32_fp16_int8_with_lines_and_next_commands(tmp_path):
    ckpt = fx.save_checkpoint(tmp_path / "tiny.pt")
    data = fx.write_dataset(tmp_path / "data")
    result = runner.invoke(app, ["export", "--weights", str(ckpt), "--dynamic", "--fp16", "--int8", "--calib",
                                 str(data), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for fmt, name in (("fp32", "tiny.onnx"), ("fp16", "tiny.fp16.onnx"), ("int8", "tiny.int8.onnx")):
        (line,) = [ln for ln in lines if ln.startswith(f"ONNX {fmt}: export success ✅")]
        assert f"saved as '{tmp_path / name}'" in line and " MB)" in line and "argmax agreement" in line
        assert (tmp_path / name).is_file()
    assert any(ln.startswith("int8 vs fp32") and "mIoU" in ln and "latency" in ln for ln in lines)
    assert f"segkd predict --weights {tmp_path / 'tiny.int8.onnx'} IMAGES" in result.stdout
    names = ",".join(str(tmp_path / n) for n in ("tiny.onnx", "tiny.fp16.onnx", "tiny.int8.onnx"))
    assert f"segkd bench --weights {names}" in result.stdout.replace("\n", "")
    assert read_meta(tmp_path / "tiny.onnx").dynamic == ["batch", "height", "width"]


def test_json_and_out_path(tmp_path):
    ckpt = fx.save_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "exported" / "m.onnx"
    result = runner.invoke(app, ["export", "-w", str(ckpt), "--out", str(out), "--imgsz", "48,64", "--argmax",
                                 "--no-simplify", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (art,) = doc["artifacts"]
    assert art["ok"] and art["path"] == str(out) and art["parity"]["agreement"] == 100.0
    meta = read_meta(out)
    assert meta.input_size == [48, 64] and meta.output == "labels"
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["labels"]


def test_broken_export_fails_and_keeps_unverified(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        result = export_onnx(*args, **kwargs)
        proto = onnx.load(str(result.path))
        init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * -2, init.name))
        onnx.save(proto, str(result.path))
        return result

    monkeypatch.setattr(artifacts, "export_onnx", broken)
    ckpt = fx.save_checkpoint(tmp_path / "tiny.pt")
    result = runner.invoke(app, ["export", "-w", str(ckpt)])
    assert result.exit_code == 1
    assert "failed ❌" in result.stdout and "export did not verify" in flat(result)
    assert (tmp_path / "tiny.onnx.unverified").is_file() and not (tmp_path / "tiny.onnx").exists()


def test_foreign_weights_with_preset(tmp_path):
    torch.save(create_model("deploy_tiny", num_classes=4).state_dict(), tmp_path / "paper.pth")
    result = runner.invoke(app, ["export", "-w", str(tmp_path / "paper.pth"), "--preset", "fastsegformer-p",
                                 "--imgsz", "64", "model.arch=deploy_tiny", "model.options={}"])
    assert result.exit_code == 0, result.output
    meta = read_meta(tmp_path / "paper.onnx")
    assert meta.preset == "fastsegformer-p" and meta.classes[1] == "sunburn" and meta.input_size == [64, 64]


def test_usage_errors(tmp_path):
    ckpt = fx.save_checkpoint(tmp_path / "tiny.pt")
    result = runner.invoke(app, ["export", "-w", str(ckpt), "--int8"])
    assert result.exit_code == 2 and "--int8 needs --calib" in flat(result)
    result = runner.invoke(app, ["export", "-w", str(ckpt), "--imgsz", "big"])
    assert result.exit_code == 2 and "--imgsz big" in flat(result)
    result = runner.invoke(app, ["export", "-w", str(ckpt), "--int8", "--calib", str(tmp_path / "calib"), "--int8-ops",
                                 "fast"])
    assert result.exit_code == 2 and "int8 op set 'fast': expected auto, conv, all" in flat(result)
    assert not list(tmp_path.glob("*.onnx"))  # refused before any export
    fixed = fx.save_checkpoint(tmp_path / "fixed.pt", arch="deploy_tiny_fixed")
    result = runner.invoke(app, ["export", "-w", str(fixed), "--imgsz", "64"])
    assert result.exit_code == 2 and "only runs at 32×32" in flat(result)
    result = runner.invoke(app, ["export", "-w", str(fixed), "--dynamic"])
    assert result.exit_code == 0 and "dynamic height/width impossible" in flat(result)
