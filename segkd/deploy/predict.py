"""Predict over images, folders, globs and videos; write label PNGs, pictures, count tables and videos.

Output folder layout:

    labels/<stem>.png        class indices, 8-bit palette PNG (the class colours as its colour table)
    <mix>/<stem>.jpg|png     the picture: overlay / cutout as JPEG, mask as PNG
    <stem>_<mix>.mp4         per video: the pictures with a running FPS figure (end-to-end, frames/s)
    counts.csv               with count=True: image, class, pixels, ratio

Every output file is planned before the first prediction and checked by the output guard
(`segkd.outputs.guard_outputs`: nothing inside a source folder, no file segkd did not write, segkd's own only with
`force`); each is written atomically. An unreadable input is reported through `warn` and recorded in `failed`;
the rest continues. A disk error stops the run with one line naming the file.
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
from segkd.outputs import atomic_path, atomic_write, disk_error, guard_outputs

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
                    warn: Warn = lambda msg: None, progress: bool = False, force: bool = False,
                    inputs: list[Path] | None = None) -> PredictReport:
    """Run `predictor` over every SOURCE (see `segkd.deploy.sources`) and write the outputs under `out_dir`.

    `inputs`: other files the run reads (the weights), protected like the sources."""
    out_dir = Path(out_dir)
    found = collect_sources(specs)
    names = plan_names(found)
    guard_outputs(planned_outputs(found, names, out_dir, opts), [*found.read, *(inputs or [])], force=force)
    report = PredictReport(out_dir, skipped=found.skipped)
    for spec, reason in found.missing:
        _fail(report, warn, spec, reason)
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


def plan_names(found) -> dict[Path, str]:
    """Output stem per input: `img`, then `img_2`, `img_3` for inputs from different folders with the same name."""
    unique = _UniqueNames()
    return {path: unique(path.stem) for path in [*found.images, *found.videos]}


def planned_outputs(found, names: dict[Path, str], out_dir: Path, opts: PredictOptions) -> list[Path]:
    """Every file a run may write (what the output guard checks before the first prediction)."""
    ext = ".png" if opts.mix == "mask" else ".jpg"
    files = [f for p in found.images for f in (out_dir / "labels" / f"{names[p]}.png",
                                               out_dir / opts.mix / f"{names[p]}{ext}")]
    files += [out_dir / f"{names[p]}_{opts.mix}.mp4" for p in found.videos]
    return files + ([out_dir / "counts.csv"] if opts.count else [])


def _predict_images(predictor: Predictor, paths: list[Path], out_dir: Path, opts: PredictOptions,
                    names: dict[Path, str], report: PredictReport, warn: Warn) -> None:
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
    for path, image, labels in zip(kept, images, predictor.predict(images)):
        stem = names[path]
        result = ImageResult(path, out_dir / "labels" / f"{stem}.png", out_dir / opts.mix / f"{stem}{ext}",
                             labels.shape[:2])
        with atomic_path(result.labels, durable=False) as tmp:
            save_labels(tmp, labels, predictor.palette)
        with atomic_path(result.picture, durable=False) as tmp:
            save_rgb(tmp, render(image, labels, predictor.palette, opts.mix, opts.alpha))
        if opts.count:
            k = predictor.meta.num_classes
            result.counts = np.bincount(labels.ravel(), minlength=k)[:k].tolist()
        report.images.append(result)


def _predict_video(predictor: Predictor, path: Path, out_dir: Path, opts: PredictOptions, names: dict[Path, str],
                   report: PredictReport, warn: Warn, bar: Progress) -> None:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        _fail(report, warn, str(path), "not a readable video")
        return
    rate = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    task = bar.add_task(path.name, total=total)
    output = out_dir / f"{names[path]}_{opts.mix}.mp4"
    writer, frames, fps = None, 0, 0.0
    try:
        with atomic_path(output) as tmp:
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
                        fps = 1.0 / per_frame if frames == 0 else (fps + 1.0 / per_frame) / 2  # FastSegFormer's
                        if writer is None:
                            h, w = picture.shape[:2]
                            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), rate, (w, h))
                        writer.write(cv2.cvtColor(draw_fps(picture, fps), cv2.COLOR_RGB2BGR))
                        frames += 1
                    bar.advance(task, len(batch))
            finally:
                if writer is not None:
                    writer.release()
            if frames == 0:
                raise _NoFrames
            if _frame_count(tmp) != frames:  # cv2.VideoWriter fails silently (a full disk): never keep a short file
                raise disk_error(output, RuntimeError(f"the video writer stopped before frame {frames}"))
    except _NoFrames:
        _fail(report, warn, str(path), "no decodable frames")
        return
    finally:
        cap.release()
    report.videos.append(VideoResult(path, output, frames, fps))


def _frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()


class _NoFrames(Exception):
    """A video without one decodable frame: its output is not kept."""


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
    with atomic_write(path, "w", newline="") as f:
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
