"""Prediction: sources, the torch and ONNX predictors, outputs for images, folders, globs and videos."""

import csv

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segkd.data.transforms import restore
from segkd.deploy.export import export_onnx
from segkd.deploy.loading import load_model
from segkd.deploy.predict import PredictOptions, predict_sources
from segkd.deploy.predictor import Predictor
from segkd.deploy.sources import collect_sources

from .conftest import PALETTE, write_video


def test_sources_expand_folders_globs_and_files(image_dir, tmp_path):
    (image_dir / "notes.txt").write_text("not an image")
    video = write_video(tmp_path / "clip.mp4")
    found = collect_sources([str(image_dir), str(image_dir / "img0.png"), str(tmp_path / "*.mp4"),
                             str(tmp_path / "nothing*.jpg"), str(tmp_path / "missing.png")])
    assert [p.name for p in found.images] == ["img0.png", "img1.png", "img2.png"]  # no duplicate img0
    assert found.videos == [video] and found.skipped == 1
    assert found.missing == [(str(tmp_path / "nothing*.jpg"), "no file matches the pattern"),
                             (str(tmp_path / "missing.png"), "no such file or folder")]


def test_torch_predictor_matches_the_model(tiny_ckpt):
    predictor = Predictor.load(tiny_ckpt, device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    labels = predictor.predict([image])[0]
    assert labels.shape == (40, 56) and labels.dtype == np.uint8
    x, geom = predictor.preprocess(image)
    with torch.no_grad():
        logits = load_model(tiny_ckpt).model(torch.from_numpy(x)[None])
    assert np.array_equal(labels, restore(logits.softmax(1), geom).argmax(1)[0].numpy())


def test_onnx_predictor_reads_its_metadata(tiny_ckpt, tmp_path):
    loaded = load_model(tiny_ckpt)
    path = export_onnx(loaded.model, loaded.meta, tmp_path / "m.onnx").path
    onnx_pred, torch_pred = Predictor.load(path, device="cpu"), Predictor.load(tiny_ckpt, device="cpu")
    assert onnx_pred.classes == torch_pred.classes and onnx_pred.palette == PALETTE
    assert onnx_pred.preprocess == torch_pred.preprocess and onnx_pred.backend.startswith("onnxruntime")
    images = [np.random.default_rng(i).integers(0, 255, (30 + i, 50, 3), dtype=np.uint8) for i in range(3)]
    for a, b in zip(onnx_pred.predict(images), torch_pred.predict(images)):  # static batch 1, fed in slices
        assert (a == b).mean() > 0.999


def test_labels_graph_predicts_too(tiny_ckpt, tmp_path):
    loaded = load_model(tiny_ckpt)
    path = export_onnx(loaded.model, loaded.meta, tmp_path / "m.onnx", argmax=True, dynamic=True).path
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    labels = Predictor.load(path, device="cpu").predict([image, image])
    assert labels[0].shape == (40, 56) and np.array_equal(labels[0], labels[1])


@pytest.mark.parametrize("mix", ["overlay", "mask", "cutout"])
def test_images_write_labels_and_pictures(mix, tiny_ckpt, image_dir, tmp_path):
    predictor = Predictor.load(tiny_ckpt, device="cpu")
    report = predict_sources(predictor, [str(image_dir)], tmp_path / "out", PredictOptions(mix=mix, batch=2))
    assert [r.source.name for r in report.images] == ["img0.png", "img1.png", "img2.png"] and not report.failed
    ext = ".png" if mix == "mask" else ".jpg"
    for r in report.images:
        assert r.labels == tmp_path / "out" / "labels" / f"{r.source.stem}.png"
        assert r.picture == tmp_path / "out" / mix / f"{r.source.stem}{ext}"
        h, w = cv2.imread(str(r.source)).shape[:2]
        assert Image.open(r.labels).mode == "P" and Image.open(r.labels).size == (w, h)
        assert cv2.imread(str(r.picture)).shape == (h, w, 3)


def test_counts_and_failures_are_reported(tiny_ckpt, image_dir, tmp_path):
    (image_dir / "broken.jpg").write_bytes(b"not a jpeg")
    warnings = []
    report = predict_sources(Predictor.load(tiny_ckpt, device="cpu"), [str(image_dir), str(tmp_path / "nope.png")],
                             tmp_path / "out", PredictOptions(count=True), warn=warnings.append)
    assert len(report.images) == 3
    assert [f[0] for f in report.failed] == [str(tmp_path / "nope.png"), str(image_dir / "broken.jpg")]
    assert any("broken.jpg: not a readable image" in w for w in warnings)
    r = report.images[0]
    assert sum(r.counts) == r.size[0] * r.size[1]
    rows = list(csv.DictReader(report.counts_csv.open()))
    assert len(rows) == 3 * 3 and rows[0]["class"] == "background"
    assert sum(float(row["ratio"]) for row in rows[:3]) == pytest.approx(1.0, abs=1e-4)


def test_video_gets_an_overlay_mp4(tiny_ckpt, tmp_path):
    video = write_video(tmp_path / "clip.mp4", frames=5)
    report = predict_sources(Predictor.load(tiny_ckpt, device="cpu"), [str(video)], tmp_path / "out",
                             PredictOptions(batch=2))
    (result,) = report.videos
    assert result.frames == 5 and result.fps > 0 and result.output == tmp_path / "out" / "clip_overlay.mp4"
    cap = cv2.VideoCapture(str(result.output))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    ok, frame = cap.read()
    assert ok and frame.shape == (48, 64, 3)
    cap.release()


def test_unreadable_video_is_a_failure(tiny_ckpt, tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"nope")
    report = predict_sources(Predictor.load(tiny_ckpt, device="cpu"), [str(tmp_path / "bad.mp4")], tmp_path / "o",
                             PredictOptions())
    assert report.done == 0 and report.failed[0][0] == str(tmp_path / "bad.mp4")
