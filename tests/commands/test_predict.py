"""`segkd predict` end to end: images, folders, videos, ONNX input, counts, exit codes."""

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from segkd.cli import app
from segkd.deploy.export import export_onnx
from segkd.deploy.loading import load_model

from testkit import flat, load_test_module

fx = load_test_module("deploy_fixtures", "deploy/conftest.py")  # registers `deploy_tiny`

runner = CliRunner()


def _setup(tmp_path):
    ckpt = fx.save_checkpoint(tmp_path / "tiny.pt")
    images = tmp_path / "images"
    images.mkdir()
    for i, (h, w) in enumerate([(40, 56), (64, 48)]):
        fx.write_image(images / f"img{i}.png", h, w, seed=i)
    return ckpt, images


def test_folder_and_video_with_counts(tmp_path):
    ckpt, images = _setup(tmp_path)
    video = fx.write_video(tmp_path / "clip.mp4", frames=3)
    result = runner.invoke(app, ["predict", str(images), str(video), "--weights", str(ckpt), "--out",
                                 str(tmp_path / "out"), "--count", "--batch", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "pixels per class" in result.stdout and "img1.png" in result.stdout and "background" in result.stdout
    assert (tmp_path / "out" / "labels" / "img0.png").is_file() and (tmp_path / "out" / "overlay" / "img1.jpg").is_file()
    assert (tmp_path / "out" / "clip_overlay.mp4").stat().st_size > 0
    assert (tmp_path / "out" / "counts.csv").read_text().startswith("image,class,pixels,ratio")


def test_onnx_weights_and_json(tmp_path):
    ckpt, images = _setup(tmp_path)
    loaded = load_model(ckpt)
    onnx_path = export_onnx(loaded.model, loaded.meta, tmp_path / "tiny.onnx").path
    result = runner.invoke(app, ["predict", str(images / "*.png"), "--weights", str(onnx_path), "--mix", "cutout",
                                 "--out", str(tmp_path / "out"), "--json", "--count"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [Path(i["source"]).name for i in doc["images"]] == ["img0.png", "img1.png"]
    assert doc["images"][0]["picture"].endswith("cutout/img0.jpg") and doc["images"][0]["size"] == [40, 56]
    assert set(doc["images"][0]["counts"]) == {"background", "spot", "scar"}
    assert Image.open(doc["images"][1]["labels"]).size == (48, 64)


def test_default_run_folder(tmp_path, monkeypatch):
    ckpt, images = _setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert runner.invoke(app, ["predict", str(images / "img0.png"), "-w", str(ckpt)]).exit_code == 0
    assert (tmp_path / "runs/predict/deploy_tiny/mask").exists() is False
    assert (tmp_path / "runs/predict/deploy_tiny/overlay/img0.jpg").is_file()
    assert not (tmp_path / "runs/predict/deploy_tiny2").exists()  # the same weights reuse their folder (exist_ok)


def test_exit_codes(tmp_path):
    ckpt, images = _setup(tmp_path)
    (images / "broken.png").write_bytes(b"nope")
    result = runner.invoke(app, ["predict", str(images), "-w", str(ckpt), "--out", str(tmp_path / "o1")])
    assert result.exit_code == 1
    assert "broken.png: not a readable image, skipped" in flat(result) and "1 of 3 inputs failed" in flat(result)
    assert (tmp_path / "o1" / "labels" / "img0.png").is_file()  # the rest still ran
    result = runner.invoke(app, ["predict", str(images / "broken.png"), "-w", str(ckpt), "--out", str(tmp_path / "o2")])
    assert result.exit_code == 2 and "nothing readable" in flat(result)
    result = runner.invoke(app, ["predict", str(images), "-w", str(ckpt), "--mix", "sepia"])
    assert result.exit_code == 2 and "--mix sepia" in flat(result)
    result = runner.invoke(app, ["predict", str(images), "-w", str(tmp_path / "none.pt")])
    assert result.exit_code == 2 and "none.pt: weights file not found" in flat(result)
