"""The training DataLoader: seeded order, per-sample augmentation RNG, identical with any number of workers.

Determinism does not depend on worker processes or on which process runs a sample:
- `EpochSampler` is PyTorch's `DistributedSampler` (shuffled with a generator seeded from `seed + epoch`,
  one equal share per rank, `set_epoch`) yielding `(epoch, index)` pairs, so the epoch reaches the dataset
  even in persistent workers.
- `AugmentedSamples` draws each sample's augmentation from `np.random.default_rng([seed, epoch, index])`.
Resuming at epoch N therefore replays exactly what an uninterrupted run would have seen.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import signal
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from segkd.config import Config, DataConfig
from segkd.data.augment import build_train_transform
from segkd.data.dataset import SegDataset, open_dataset
from segkd.data.io import read_class_file
from segkd.data.palette import default_palette
from segkd.data.scan import scan_splits
from segkd.data.transforms import Preprocess
from segkd.engine.device import world
from segkd.errors import ConfigError, SegkdError

# (image H×W×3 uint8, mask H×W uint8, rng) -> (image, mask) at the train input size
TrainTransformFn = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def open_split(data_cfg: DataConfig, split: str, num_classes: int) -> SegDataset:
    """The raw (un-augmented) samples of `split` under `data.root`, limited to `data.images`."""
    if not data_cfg.root:
        raise ConfigError("data.root is not set: pass --data DIR (or data.root=DIR)")
    return open_dataset(data_cfg.root, split, format=data_cfg.format, num_classes=num_classes,
                        ignore_index=data_cfg.ignore_index, images=data_cfg.images)


def adopt_dataset_classes(cfg: Config, explicit: set[str]) -> list[str]:
    """A preset on the user's data: `classes.txt` in data.root sets model.num_classes and data.classes (and
    data.palette when it gives colours) unless those keys were given explicitly (`explicit`); a preset palette
    with another number of colours gives way to a generated one. Returns one note per change it made."""
    parsed = read_class_file(cfg.data.root) if cfg.data.root and Path(cfg.data.root).is_dir() else None
    if parsed is None:
        return []
    (names, colours), notes = parsed, []
    source = Path(cfg.data.root) / "classes.txt"
    if "model.num_classes" not in explicit and cfg.model.num_classes != len(names):
        notes.append(f"model.num_classes={len(names)} from {source} (the preset says {cfg.model.num_classes})")
        cfg.model.num_classes = len(names)
    if "data.classes" not in explicit:
        cfg.data.classes = list(names)
    if "data.palette" not in explicit:
        palette = cfg.data.palette
        if colours:
            cfg.data.palette = colours
        elif palette is not None and len(palette) != cfg.model.num_classes:
            notes.append(f"the preset's {len(palette)}-colour data.palette gives way to a generated one for "
                         f"{cfg.model.num_classes} classes")
            cfg.data.palette = None
    return notes


def resolve_classes(data_cfg: DataConfig, dataset: SegDataset, num_classes: int
                    ) -> tuple[list[str], list[list[int]]]:
    """Class names and palette: the dataset's classes.txt wins, then the config, then class0.. / VOC colours."""
    names = list(dataset.classes or data_cfg.classes or [f"class{i}" for i in range(num_classes)])
    if len(names) != num_classes:
        source = f"{dataset.root}/classes.txt" if dataset.classes else "data.classes"
        raise ConfigError(f"{source} lists {len(names)} classes but model.num_classes={num_classes}")
    palette = [list(c) for c in (dataset.palette or data_cfg.palette or default_palette(num_classes))]
    if len(palette) < num_classes:
        raise ConfigError(f"data.palette has {len(palette)} colours for {num_classes} classes")
    return names, palette[:num_classes]


class EpochSampler(DistributedSampler):
    """PyTorch's `DistributedSampler` over `range(n)` (permutation seeded with seed + epoch, sharded by rank,
    padded to equal shares) that yields `(epoch, index)`; rank and world size are given, never guessed."""

    def __init__(self, n: int, seed: int, *, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False):
        super().__init__(range(n), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.skip = 0  # indices of this rank's share to leave out once (a run resumed mid-epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        skip, self.skip = self.skip, 0
        return ((self.epoch, index) for index in itertools.islice(super().__iter__(), skip, None))


@contextlib.contextmanager
def worker_errors() -> Iterator[None]:
    """Re-raise a segkd error from a DataLoader worker as the original one-line error, not torch's
    "Caught DataError in DataLoader worker process 0 ... Original Traceback" wrapper."""
    try:
        yield
    except SegkdError as e:
        text = str(e)
        if "Original Traceback" not in text:
            raise
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        prefix = f"{type(e).__module__}.{type(e).__qualname__}: "
        raise type(e)(last[len(prefix):] if last.startswith(prefix) else last) from None


class AugmentedSamples(Dataset):
    """`dataset[index]` augmented with a per-(seed, epoch, index) RNG, normalised, as tensors."""

    def __init__(self, dataset: Dataset, transform: TrainTransformFn,
                 normalize: Callable[[np.ndarray], np.ndarray], seed: int):
        if seed < 0:
            raise ConfigError(f"train.seed={seed} must be >= 0")
        self.dataset, self.transform, self.normalize, self.seed = dataset, transform, normalize, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        image, mask = self.dataset[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        image, mask = self.transform(image, mask, rng)
        # 3×H×W float32, H×W int64
        return torch.from_numpy(self.normalize(image)), torch.from_numpy(mask.astype(np.int64))


def build_train_loader(samples: AugmentedSamples, *, batch_size: int, workers: int, seed: int,
                       pin_memory: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Shuffled, seeded batches; the last partial batch is dropped when there is more than one batch."""
    share = math.ceil(len(samples) / world_size)
    drop_last = share > batch_size
    sampler = EpochSampler(len(samples), seed, rank=rank, world_size=world_size, drop_last=False)
    return DataLoader(
        samples,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),  # worker seeds never touch the global torch RNG
        worker_init_fn=ignore_sigint if workers > 0 else None,
    )


def ignore_sigint(worker_id: int) -> None:
    """In DataLoader workers: a terminal's Ctrl-C reaches the whole process group, and the main process alone
    handles it (saves at the step boundary); a worker that died of it would turn that into a crash."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def open_run_splits(cfg: Config, log: Callable[[str], None]) -> tuple[SegDataset, SegDataset]:
    """The train and val samples of a run, both scanned before any step (all problems listed at once).

    Sets, in place, `cfg.data.root` to its absolute path (checkpoints keep where the data was) and
    `cfg.data.classes`/`palette` from the data set unless the config names them.
    """
    k = cfg.model.num_classes
    splits = {"train": open_split(cfg.data, cfg.data.train_split, k), "val": open_split(cfg.data, cfg.data.val_split, k)}
    cfg.data.root = str(Path(cfg.data.root).resolve())
    train_set, val_set = scan_splits(splits, skip_bad=cfg.data.skip_bad, log=log).values()
    cfg.data.classes, cfg.data.palette = resolve_classes(cfg.data, train_set, k)
    return train_set, val_set


def build_run_loader(cfg: Config, train_set: SegDataset, input_size: tuple[int, int], batch_size: int,
                     device: torch.device) -> DataLoader:
    """This rank's augmented, normalised train loader at `input_size`; an empty split is a ConfigError."""
    rank, world_size = world()
    samples = AugmentedSamples(
        train_set, build_train_transform(cfg.augment, cfg.data, input_size),
        Preprocess.from_config(cfg.data, size=input_size).normalize, cfg.train.seed,
    )
    loader = build_train_loader(samples, batch_size=batch_size, workers=cfg.data.workers, seed=cfg.train.seed,
                                pin_memory=device.type == "cuda", rank=rank, world_size=world_size)
    if len(loader) == 0:
        raise ConfigError(f"{cfg.data.root}: split '{cfg.data.train_split}' has no images to train on")
    return loader
