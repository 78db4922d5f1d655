"""Predict over images, folders, globs and videos; write label PNGs, pictures, count tables and videos.

Output folder layout:

    labels/<stem>.png        class indices, 8-bit palette PNG (the class colours as its colour table)
    <mix>/<stem>.jpg|png     the picture: overlay / cutout as JPEG, mask as PNG
    <stem>_<mix>.mp4         per video: the pictures with a running FPS figure (end-to-end, frames/s)
    counts.csv               with count=True: image, class, pixels, ratio

An unreadable input is reported through `warn` and recorded in `failed`; the rest continues.
"""

from __future__ import annotations

import contextlib
import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from segkd.data.io import read_image
from segkd.deploy.predictor import Predictor
from segkd.deploy.sources import collect_sources
from segkd.deploy.visualize import draw_fps, render, save_labels, save_rgb
from segkd.errors import DataError

Warn = Callable[[str], None]


@dataclass
class PredictOptions:
    mix: str = "overlay"  # overlay | mask | cutout
    alpha: float = 0.7  # colour weight of the overlay
    batch: int = 1
    count: bool = False


@dataclass
class ImageResult:
    source: Path
    labels: Path
    picture: Path
    size: tuple[int, int]  # H, W
    counts: list[int] | None = None  # pixels per class (count=True)


@dataclass
class VideoResult:
    source: Path
    output: Path
    frames: int
    fps: float  # end-to-end frames per second (decode + preprocess + model + postprocess + render)


@dataclass
class PredictReport:
    out_dir: Path
    images: list[ImageResult] = field(default_factory=list)
    videos: list[VideoResult] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    skipped: int = 0  # non-image files in folders / glob matches
    counts_csv: Path | None = None

    @property
    def done(self) -> int:
        return len(self.images) + len(self.videos)


def predict_sources(predictor: Predictor, specs: list[str], out_dir: str | Path, opts: PredictOptions,
                    warn: Warn = lambda msg: None, progress: bool = False) -> PredictReport:
    """Run `predictor` over every SOURCE (see `segkd.deploy.sources`) and write the outputs under `out_dir`."""
    out_dir = Path(out_dir)
    found = collect_sources(specs)
    report = PredictReport(out_dir, skipped=found.skipped)
    for spec, reason in found.missing:
        _fail(report, warn, spec, reason)
    names = _UniqueNames()
    with _progress(progress) as bar:
        task = bar.add_task("predict", total=len(found.images)) if found.images else None
        for chunk in _chunks(found.images, opts.batch):
            _predict_images(predictor, chunk, out_dir, opts, names, report, warn)
            if task is not None:
                bar.advance(task, len(chunk))
        for video in found.videos:
            _predict_video(predictor, video, out_dir, opts, names, report, warn, bar)
    if opts.count and report.images:
        report.counts_csv = write_counts(out_dir / "counts.csv", report.images, predictor.classes)
    return report


def _predict_images(predictor: Predictor, paths: list[Path], out_dir: Path, opts: PredictOptions,
                    names: "_UniqueNames", report: PredictReport, warn: Warn) -> None:
    images, kept = [], []
    for path in paths:
        try:
            images.append(read_image(path))
            kept.append(path)
        except DataError:
            _fail(report, warn, str(path), "not a readable image")
    if not images:
        return
    ext = ".png" if opts.mix == "mask" else ".jpg"
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    (out_dir / opts.mix).mkdir(parents=True, exist_ok=True)
    for path, image, labels in zip(kept, images, predictor.predict(images)):
        stem = names(path.stem)
        result = ImageResult(path, out_dir / "labels" / f"{stem}.png", out_dir / opts.mix / f"{stem}{ext}",
                             labels.shape[:2])
        save_labels(result.labels, labels, predictor.palette)
        save_rgb(result.picture, render(image, labels, predictor.palette, opts.mix, opts.alpha))
        if opts.count:
            k = predictor.meta.num_classes
            result.counts = np.bincount(labels.ravel(), minlength=k)[:k].tolist()
        report.images.append(result)


def _predict_video(predictor: Predictor, path: Path, out_dir: Path, opts: PredictOptions, names: "_UniqueNames",
                   report: PredictReport, warn: Warn, bar: Progress) -> None:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        _fail(report, warn, str(path), "not a readable video")
        return
    rate = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    task = bar.add_task(path.name, total=total)
    output = out_dir / f"{names(path.stem)}_{opts.mix}.mp4"
    writer, frames, fps = None, 0, 0.0
    try:
        while True:
            start = time.perf_counter()
            batch = _read_frames(cap, opts.batch)  # RGB frames
            if not batch:
                break
            pictures = [render(f, lab, predictor.palette, opts.mix, opts.alpha)
                        for f, lab in zip(batch, predictor.predict(batch))]
            per_frame = (time.perf_counter() - start) / len(batch)
            for picture in pictures:
                fps = 1.0 / per_frame if frames == 0 else (fps + 1.0 / per_frame) / 2  # FastSegFormer's running mean
                if writer is None:
                    output.parent.mkdir(parents=True, exist_ok=True)
                    h, w = picture.shape[:2]
                    writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), rate, (w, h))
                writer.write(cv2.cvtColor(draw_fps(picture, fps), cv2.COLOR_RGB2BGR))
                frames += 1
            bar.advance(task, len(batch))
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        _fail(report, warn, str(path), "no decodable frames")
        return
    report.videos.append(VideoResult(path, output, frames, fps))


def _read_frames(cap: cv2.VideoCapture, n: int) -> list[np.ndarray]:
    frames = []
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return frames


def write_counts(path: Path, results: list[ImageResult], classes: list[str]) -> Path:
    """One row per image and class: image, class, pixels, ratio."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "class", "pixels", "ratio"])
        for r in results:
            total = max(1, sum(r.counts or []))
            for name, n in zip(classes, r.counts or []):
                writer.writerow([str(r.source), name, n, f"{n / total:.6f}"])
    return path


def _fail(report: PredictReport, warn: Warn, name: str, reason: str) -> None:
    report.failed.append((name, reason))
    warn(f"{name}: {reason}, skipped")


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), max(1, n)):
        yield items[i : i + max(1, n)]


class _UniqueNames:
    """Output stems: `img`, then `img_2`, `img_3` for inputs from different folders with the same name."""

    def __init__(self):
        self.used: set[str] = set()

    def __call__(self, stem: str) -> str:
        name, n = stem, 2
        while name in self.used:
            name, n = f"{stem}_{n}", n + 1
        self.used.add(name)
        return name


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Progress]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not enabled, transient=True) as bar:
        yield bar
