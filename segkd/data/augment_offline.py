"""`segkd augment`: offline augmentation of one split into a new dataset, never into val/test.

- **Plan first** (`segkd.data.augment_plan`): every refusal happens before anything is written.
- **One op library.** The recipe's op list is built from the registry the online pipeline uses, with no
  network input size: each image keeps its own size (an op that changes it is stretched back, image bilinear,
  mask nearest), new border pixels are grey / the recipe's mask fill.
- **Deterministic.** Copy k of a stem draws from `default_rng([seed, sha256(stem), k])`, so the output files
  are byte-identical for one seed whatever `--workers` (one: in this process; more: processes from a fork
  server, one OpenCV thread each).
- **Staged.** Everything is written into a temporary folder beside `--out` (through `segkd.outputs`' atomic
  writer) and renamed into place at the end; a failure or Ctrl-C removes it, and `--force` swaps out an
  earlier `segkd augment` folder only once the new one is complete.
- **Corrupt pairs** of the chosen split are skipped by name (left out of the lists); the report says so and the
  command exits with `PARTIAL_EXIT`. The other splits are copied byte for byte and never decoded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
from PIL import Image

from segkd.data.augment_pipeline import build_ops
from segkd.data.augment_ops import AugmentContext, resize_pair
from segkd.data.augment_plan import MARKER, AugmentPlan, PairJob, copy_stem, plan_augment
from segkd.data.augment_preview import write_preview
from segkd.data.augment_recipes import Recipe, load_recipe
from segkd.data.augment_report import AugmentReport, PairResult, list_texts
from segkd.data.io import read_image
from segkd.data.layouts import LAYOUTS
from segkd.errors import ConfigError, DataError
from segkd.outputs import MANIFEST, atomic_path, atomic_write, make_dirs, temp_path

PARTIAL_EXIT = 3  # exit code when corrupt pairs were skipped (the rest was written)
Progress = Callable[[Iterable, int], Iterator]
JPEG_QUALITY = 95
COPIES_PER_WORKER = 64


class OfflinePipeline:
    """`pipeline(image, mask, rng) -> (image, mask)` at the pair's own size, from a recipe."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        ctx = AugmentContext(None, recipe.pad_value, recipe.mask_fill)
        try:
            self.ops, self.names = build_ops(recipe.ops, ctx)
        except ConfigError as e:
            raise ConfigError(f"{recipe.name}: {e}") from None

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        hw = image.shape[:2]
        for op in self.ops:
            image, mask = op(image, mask, rng)
        if image.shape[:2] != hw:
            image, mask = resize_pair(image, mask, hw, cv2.INTER_LINEAR)
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def auto_workers(copies: int) -> int:
    """One process per core, but one per `COPIES_PER_WORKER` copies at most: a worker process costs seconds
    to start (it imports albumentations, which imports torch), more than a small job takes."""
    return max(1, min(os.cpu_count() or 1, copies // COPIES_PER_WORKER))


def pair_rng(seed: int, stem: str, k: int) -> np.random.Generator:
    """The generator of copy k of `stem`: a function of (seed, stem, k) only, not of order or worker."""
    digest = int.from_bytes(hashlib.sha256(stem.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([seed, digest, k])


def augment_dataset(data: Path | str, out: Path | str, *, times: int = 1, recipe: str | Path = "default",
                    split: str = "train", seed: int = 0, workers: int | None = None, preview: bool = False,
                    force: bool = False, progress: Progress | None = None) -> AugmentReport:
    """Write DATA with N augmented copies of each `split` pair to `out`; see the module docstring."""
    started = time.perf_counter()
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"--seed {seed}: give an integer >= 0")
    rec = load_recipe(recipe)
    OfflinePipeline(rec)  # validate every op (named with its position) before anything is planned or written
    plan = plan_augment(data, out, split=split, times=times, force=force)
    workers = max(1, min(workers or auto_workers(len(plan.jobs) * times), len(plan.jobs) or 1))
    with staged_folder(plan.out) as stage:
        results = _run_jobs(plan, rec, seed, stage, workers, progress)
        report = AugmentReport.build(plan, rec, seed, workers, results)
        _write_tree(plan, report, stage)
        if preview:
            report.preview = plan.out / write_preview(stage, plan, results, rec).relative_to(stage)
        with atomic_write(stage / MARKER, "w", encoding="utf-8") as f:
            f.write(json.dumps(report.marker(), indent=2) + "\n")
        _sort_manifests(stage)
    report.seconds = time.perf_counter() - started
    return report


def _run_jobs(plan: AugmentPlan, rec: Recipe, seed: int, stage: Path, workers: int,
              progress: Progress | None) -> list[PairResult]:
    """Results in job order. One worker runs in this process; more are fresh processes from a fork server
    (a plain fork can hang in OpenCV's thread pool when this process has used it)."""
    args = (rec, seed, str(stage), plan.layout.name)
    if workers == 1:
        _init_worker(*args, threads=None)
        try:
            results = map(_augment_pair, plan.jobs)
            return list(progress(results, len(plan.jobs)) if progress else results)
        finally:
            _WORKER.clear()
    methods = mp.get_all_start_methods()
    context = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        context.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(workers, context, initializer=_init_worker, initargs=args) as pool:
        results = pool.map(_augment_pair, plan.jobs, chunksize=1)
        return list(progress(results, len(plan.jobs)) if progress else results)


# ---------------------------------------------------------------- worker processes

_WORKER: dict = {}


def _init_worker(recipe: Recipe, seed: int, stage: str, layout: str, threads: int | None = 1) -> None:
    if threads is not None:
        cv2.setNumThreads(threads)  # one process per core; more threads would only oversubscribe
    _WORKER.update(pipeline=OfflinePipeline(recipe), seed=seed, stage=Path(stage), layout=LAYOUTS[layout],
                   ignore_index=recipe.ignore_index)


def _augment_pair(job: PairJob) -> PairResult:
    """Copy the pair byte for byte, write its N copies, count class pixels; a corrupt file skips the pair."""
    w = _WORKER
    try:
        if job.mask is None:
            raise DataError(f"{job.image}: no mask for this image")
        image = read_image(job.image)
        mask = w["layout"].load_mask(job.mask, w["ignore_index"])
        palette = _mask_palette(job.mask)
    except DataError as e:
        return PairResult(job.stem, skipped=str(e))
    if mask.shape != image.shape[:2]:
        return PairResult(job.stem, skipped=f"{job.mask}: mask {mask.shape[1]}×{mask.shape[0]} does not match "
                                            f"image {image.shape[1]}×{image.shape[0]}")
    stage: Path = w["stage"]
    for src, rel in ((job.image, job.image_rel), (job.mask, job.mask_rel)):
        with atomic_path(stage / rel, durable=False) as tmp:
            shutil.copyfile(src, tmp)
    before, after = _counts(mask), np.zeros(256, np.int64)
    for k, (image_rel, mask_rel) in enumerate(job.copies, 1):
        aug_image, aug_mask = w["pipeline"](image, mask, pair_rng(w["seed"], job.stem, k))
        _write_image(stage / image_rel, aug_image)
        with atomic_write(stage / mask_rel, "wb", durable=False) as f:
            f.write(mask_png(aug_mask, palette))
        after += _counts(aug_mask)
    return PairResult(job.stem, before=before, copies=after)


def _counts(mask: np.ndarray) -> np.ndarray:
    """Pixels per label value (256 bins); OpenCV's histogram is ~8× faster than bincount and exact in float32
    up to 2^24 pixels per bin."""
    if mask.size >= 1 << 24:
        return np.bincount(mask.ravel(), minlength=256).astype(np.int64)
    return cv2.calcHist([mask], [0], None, [256], [0, 256]).ravel().astype(np.int64)


def _mask_palette(path: Path) -> list[list[int]] | None:
    """The colour table of a palette PNG (kept on the copies), else None."""
    with contextlib.suppress(OSError, ValueError):
        with Image.open(path) as im:
            if im.mode == "P":
                flat = im.getpalette() or []
                return [flat[i:i + 3] for i in range(0, len(flat) - 2, 3)]
    return None


def mask_png(mask: np.ndarray, palette: list[list[int]] | None) -> bytes:
    """H×W class indices as PNG bytes: OpenCV's encoder (Pillow's default zlib level takes ~8× longer on a
    1024×1024 mask); with a palette, the 8-bit grey PNG becomes an indexed one (same pixel bytes) by setting
    the IHDR colour type to 3 and adding a 256-entry PLTE chunk, as `segkd.data.io.write_mask` writes it."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(mask, np.uint8))
    data = buf.tobytes()
    if not palette:
        return data
    ihdr = bytearray(data[8:33])  # length (4) + b"IHDR" + 13 data bytes + CRC (4), after the 8-byte signature
    ihdr[17] = 3  # colour type: indexed (data byte 9)
    ihdr[21:25] = zlib.crc32(bytes(ihdr[4:21])).to_bytes(4, "big")
    colours = bytes(v for rgb in palette[:256] for v in rgb).ljust(768, b"\0")
    plte = (768).to_bytes(4, "big") + b"PLTE" + colours + zlib.crc32(b"PLTE" + colours).to_bytes(4, "big")
    return data[:8] + bytes(ihdr) + plte + data[33:]


def _write_image(path: Path, rgb: np.ndarray) -> None:
    """Encode as the file's extension says (JPEG at quality 95); deterministic bytes."""
    ext = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise DataError(f"{path}: OpenCV cannot encode {ext} images")
    with atomic_write(path, "wb", durable=False) as f:
        f.write(buf.tobytes())


# ---------------------------------------------------------------- the rest of the tree, staging


def _write_tree(plan: AugmentPlan, report: AugmentReport, stage: Path) -> None:
    """Other splits byte for byte, classes.txt, and the split lists with each copy in its source's lists."""
    for src, rel in plan.verbatim:
        with atomic_path(stage / rel, durable=False) as tmp:
            shutil.copyfile(src, tmp)
    if not any(rel == "classes.txt" for _, rel in plan.verbatim):
        with atomic_write(stage / "classes.txt", "w", encoding="utf-8") as f:
            f.write("".join(f"{name}\n" for name in report.classes))
    if not plan.list_layout:
        return
    lists = plan.layout.list_dir(plan.root)
    kept = {r.stem: [copy_stem(r.stem, k) for k in range(1, plan.times + 1)] for r in report.results if not r.skipped}
    for name, text in list_texts(lists, plan.split_stems, kept, {r.stem for r in report.results}).items():
        with atomic_write(stage / lists.relative_to(plan.root) / f"{name}.txt", "wb") as f:
            f.write(text)


@contextlib.contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A temporary folder beside `out`, renamed onto `out` on success (an earlier folder there is swapped out
    and deleted only then); removed on any failure. (The folder counterpart of `segkd.outputs.atomic_path`.)"""
    make_dirs(out.parent)
    stage = make_dirs(temp_path(out))
    try:
        yield stage
        old = None
        if out.is_dir() and any(out.iterdir()):
            old = temp_path(out)
            os.replace(out, old)
        elif out.is_dir():
            out.rmdir()
        os.replace(stage, out)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _sort_manifests(stage: Path) -> None:
    """Workers append to the per-folder output manifests in completion order; sort them so that the whole
    tree is byte-identical whatever the number of workers."""
    for manifest in stage.rglob(MANIFEST):
        names = sorted(set(manifest.read_text(encoding="utf-8").split()))
        manifest.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
