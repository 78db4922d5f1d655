"""The data check before training: every split a run uses, scanned in parallel, all problems reported at once.

```python
train_set, val_set = scan_splits({"train": train_set, "val": val_set}, skip_bad=False, log=print).values()
```
Per pair (in a thread pool; decoding releases the GIL): the mask exists; the image's header reads and, for JPEG
and PNG, its end marker is present (a truncated file); the mask decodes as class indices (palette / grey PNG,
16-bit values that fit, no colour image); mask and image sizes agree; labels are < num_classes or the ignore
index. Per split list: it is not empty, no stem is listed twice, and val shares no stem with train. Problems are
one line per file, the first `SHOWN` then a count, in one `DataError` (exit 2); with `skip_bad` the pairs that
fail are left out and counted instead (an empty split still fails).

When every split is clean, each one's result is cached in `<list folder>/.segkd-scan-<split>.json`, keyed by every
file's size and mtime plus the settings that change the checks, so a re-run on unchanged data only stats the files
(10,000 pairs: see benchmarks/data_scan.py). Nothing is written while a problem remains (the data tree stays as
it was), and a read-only data folder just goes uncached.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image, UnidentifiedImageError

from segkd.data.dataset import SegDataset, check_labels
from segkd.data.layouts import Sample
from segkd.errors import DataError
from segkd.outputs import OutputError, atomic_write

SHOWN = 20  # problems listed one per line before the rest are counted
CACHE_VERSION = 1
TAILS = {"JPEG": (b"\xff\xd9", 64), "PNG": (b"IEND", 64)}  # end marker, searched in the last N bytes


@dataclass
class SplitScan:
    split: str
    dataset: SegDataset
    problems: dict[int, str] = field(default_factory=dict)  # sample index -> one-line problem
    list_problems: list[str] = field(default_factory=list)  # problems of the list itself (not skippable)
    cached: bool = False
    seconds: float = 0.0
    key: str = ""  # cache key of the pair checks ("" = not cached)


def split_source(dataset: SegDataset) -> Path:
    """The file or folder that defines a split: its list file, or (Cityscapes) its image folder."""
    folder = dataset.layout.list_dir(dataset.root)
    return folder / f"{dataset.split}.txt" if folder is not None else dataset.root / "leftImg8bit" / dataset.split


def check_pair(dataset: SegDataset, sample: Sample) -> str | None:
    """The first problem of one image/mask pair as a line naming the file, or None."""
    if sample.mask is None:
        return f"{sample.image}: missing mask (expected {dataset.layout.expected_mask(dataset.root, sample)})"
    try:
        h, w = image_header(sample.image)
        mask = dataset.layout.load_mask(sample.mask, dataset.ignore_index)
        if mask.shape != (h, w):
            return (f"{sample.mask}: mask is {mask.shape[0]}×{mask.shape[1]} but image {sample.image.name} "
                    f"is {h}×{w}")
        check_labels(mask, sample.mask, dataset.num_classes, dataset.ignore_index)
    except DataError as e:
        return str(e)
    return None


def image_header(path: Path) -> tuple[int, int]:
    """(H, W) from the header; DataError for a missing, unreadable or truncated (JPEG/PNG) file."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            fmt = im.format
    except FileNotFoundError:
        raise DataError(f"{path}: unreadable image (file not found)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise DataError(f"{path}: unreadable image (not a decodable image file)") from None
    if fmt in TAILS:
        marker, n = TAILS[fmt]
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - n))
            if marker not in f.read():
                raise DataError(f"{path}: truncated {fmt} file (no end marker)")
    return h, w


def cache_key(dataset: SegDataset, workers: int = 1) -> str:
    """sha1 of the check settings and every file's (path, size, mtime): the scan result's cache key.
    The stat() calls run in `workers` threads (they release the GIL), in chunks."""
    paths = [str(p) if p is not None else "" for s in dataset.samples for p in (s.image, s.mask)]
    step = max(1, -(-len(paths) // workers))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        stats = [st for part in pool.map(_stat_all, [paths[i : i + step] for i in range(0, len(paths), step)])
                 for st in part]
    settings = json.dumps([CACHE_VERSION, dataset.format, dataset.num_classes, dataset.ignore_index])
    text = "\n".join(f"{p}\0{size}\0{mtime}" for p, (size, mtime) in zip(paths, stats))
    return hashlib.sha1((settings + "\n" + text).encode()).hexdigest()


def _stat_all(paths: list[str]) -> list[tuple[int, int]]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_size, st.st_mtime_ns))
        except (OSError, ValueError):
            out.append((-1, -1))
    return out


def cache_path(dataset: SegDataset) -> Path:
    folder = dataset.layout.list_dir(dataset.root) or dataset.root
    return folder / f".segkd-scan-{dataset.split}.json"


def scan_split(dataset: SegDataset, workers: int | None = None, use_cache: bool = True) -> SplitScan:
    """Check every pair of `dataset` (from the cache when the files are unchanged) and its list."""
    start = time.perf_counter()
    result = SplitScan(dataset.split, dataset)
    source = split_source(dataset)
    if not dataset.samples:
        result.list_problems.append(f"{source}: split '{dataset.split}' has no images")
    for stem, n in Counter(s.stem for s in dataset.samples).items():
        if n > 1:
            result.list_problems.append(f"{source}: '{stem}' is listed {n} times")
    workers = workers or min(8, os.cpu_count() or 1)
    result.key = cache_key(dataset, workers) if use_cache else ""
    cached = _read_cache(cache_path(dataset), result.key) if use_cache else None
    if cached is not None:
        result.problems, result.cached = cached, True
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            found = pool.map(lambda s: check_pair(dataset, s), dataset.samples, chunksize=16)
            result.problems = {i: p for i, p in enumerate(found) if p is not None}
    result.seconds = time.perf_counter() - start
    return result


def _read_cache(path: Path, key: str) -> dict[int, str] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != key:
        return None
    return {int(i): p for i, p in doc.get("problems", {}).items()}


def save_cache(scan: SplitScan) -> None:
    """Record a clean split's scan beside its list (skipped for a read-only dataset, scanned again next time)."""
    if not scan.key or scan.cached or scan.problems or scan.list_problems:
        return
    try:
        with atomic_write(cache_path(scan.dataset), "w", durable=False, encoding="utf-8") as f:
            json.dump({"version": CACHE_VERSION, "key": scan.key, "problems": {}}, f)
    except (OutputError, OSError):
        pass


def scan_splits(datasets: dict[str, SegDataset], skip_bad: bool = False, log: Callable[[str], None] = print,
                workers: int | None = None) -> dict[str, SegDataset]:
    """Scan each split, check train/val overlap, then fail listing every problem, or (skip_bad) drop bad pairs."""
    scans = {name: scan_split(ds, workers) for name, ds in datasets.items()}
    names = list(scans)
    for i, later in enumerate(names):  # a stem in two splits: the later split's entry is the problem
        for earlier in names[:i]:
            seen = {s.stem for s in scans[earlier].dataset.samples}
            for j, s in enumerate(scans[later].dataset.samples):
                if s.stem in seen and j not in scans[later].problems:
                    other = scans[earlier]
                    scans[later].problems[j] = (f"{split_source(scans[later].dataset)}: '{s.stem}' is also in "
                                                f"split '{other.split}' ({split_source(other.dataset)})")
    fatal = [p for scan in scans.values() for p in scan.list_problems if not skip_bad or "has no images" in p]
    pairs = [p for scan in scans.values() for _, p in sorted(scan.problems.items())]
    if skip_bad and not fatal:
        kept = {name: _without(scan, log) for name, scan in scans.items()}
        empty = [name for name, ds in kept.items() if not ds.samples]
        if not empty:
            return kept
        fatal.append(f"{split_source(kept[empty[0]])}: no pair of split '{empty[0]}' passes the data scan")
    problems = fatal + ([] if skip_bad else pairs)
    if problems:
        total = sum(len(s.dataset.samples) for s in scans.values())
        lines = problems[:SHOWN] + ([f"... and {len(problems) - SHOWN} more"] if len(problems) > SHOWN else [])
        root = next(iter(scans.values())).dataset.root
        lines.append(f"{len(problems)} data problem(s) in {total} pairs of {root} "
                     f"(splits {', '.join(scans)}): fix them, or set data.skip_bad=true to train on the rest")
        raise DataError("\n  ".join(lines))
    for scan in scans.values():
        save_cache(scan)
    return {name: scan.dataset for name, scan in scans.items()}


def _without(scan: SplitScan, log: Callable[[str], None]) -> SegDataset:
    """The split without its bad pairs (and without repeated stems), the count logged."""
    ds = scan.dataset
    seen: set[str] = set()
    keep = []
    for i, s in enumerate(ds.samples):
        if i not in scan.problems and s.stem not in seen:
            keep.append(s)
            seen.add(s.stem)
    dropped = len(ds.samples) - len(keep)
    if dropped:
        first = next(iter(scan.problems.values()), "repeated stems")
        log(f"data.skip_bad: {dropped} of {len(ds.samples)} {scan.split} pairs left out (first: {first})")
    ds.samples = keep
    return ds
