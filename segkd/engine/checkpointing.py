"""Checkpoints on disk: atomic writes, RNG state, and reading a last.pt back to resume.

- `atomic_save(obj, path)`: `torch.save` through `segkd.outputs.atomic_write` (temp file beside `path`, fsync,
  `os.replace`); a kill mid-write leaves the previous file intact, never a truncated one, and a full disk is one
  line naming the file.
- `repair_best(weights_dir)`: last.pt is written before best.pt, so a crash between the two leaves a last.pt whose
  best epoch is its own epoch while best.pt is missing or older; best.pt is then rebuilt from last.pt (the same
  weights without the training state). Run on every start and resume, with `remove_stale_temps`.
- `training_state(...)`: optimizer, scheduler, scaler, EMA, KD adapters and RNG states for last.pt.
- RNG states (torch, CUDA, numpy, python `random`) are stored as tensors, lists and numbers so every checkpoint
  loads with `torch.load(..., weights_only=True)`.
- `resume_config(path, overrides)`: a run continues with the config saved in its last.pt; only keys that do
  not change the result (where the data lives, workers, device, tensorboard) may be overridden, plus the
  divergence remedies (`train.lr`, `train.nan_patience`, `data.skip_bad`), which the trainer notes.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segkd.config import Config, config_from_dict
from segkd.config.overrides import apply_overrides
from segkd.errors import ConfigError, WeightsError
from segkd.models import read_checkpoint
from segkd.engine.time_budget import finished
from segkd.outputs import atomic_write, remove_stale_temps

#: keys that may differ between a run and its resumption
RESUME_OVERRIDES = ("data.root", "data.workers", "train.device", "train.devices", "train.tensorboard",
                    "train.lr", "train.nan_patience", "data.skip_bad", "resume")
#: what a last.pt holds beyond the model (best.pt lacks it)
TRAIN_STATE_KEYS = ("epoch", "optimizer", "scheduler", "scaler", "rng", "best_fitness")
#: keys only last.pt has: best.pt is last.pt without them
LAST_ONLY_KEYS = ("optimizer", "scheduler", "scaler", "rng", "global_step", "ema", "train_model", "distiller",
                  "epoch_step", "epoch_sums")


def atomic_save(obj: Any, path: str | Path) -> Path:
    """`torch.save` to `path` through a temp file and `os.replace`."""
    path = Path(path)
    with atomic_write(path) as f:
        torch.save(obj, f)
    return path


def repair_best(weights_dir: str | Path) -> Path | None:
    """Rebuild best.pt from last.pt after a crash between their writes; returns best.pt when it was rebuilt."""
    weights_dir = Path(weights_dir)
    last_path, best_path = weights_dir / "last.pt", weights_dir / "best.pt"
    if not last_path.is_file():
        return None
    last = torch.load(last_path, map_location="cpu", weights_only=True)
    if "epoch_step" in last or last.get("best_epoch") is None or last["best_epoch"] != last.get("epoch"):
        return None  # a mid-epoch save, or the best epoch is older: best.pt was written before this last.pt
    if best_path.is_file():
        best = torch.load(best_path, map_location="cpu", weights_only=True)
        if best.get("epoch") == last["epoch"]:
            return None
    atomic_save({k: v for k, v in last.items() if k not in LAST_ONLY_KEYS}, best_path)
    return best_path


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (model initialisation; augmentation has its own per-sample RNG)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def training_state(optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any, global_step: int, *,
                   ema: Any = None, model: torch.nn.Module | None = None,
                   adapters: torch.nn.Module | None = None) -> dict:
    """What last.pt adds to a model checkpoint. With EMA, the checkpoint's `model` is the EMA copy, so the
    raw weights go in `train_model`; KD adapters go in `distiller`."""
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "scaler": scaler.state_dict(), "rng": rng_state(), "global_step": global_step}
    if ema is not None:
        state |= {"ema": ema.state_dict(), "train_model": cpu_state(model)}
    if adapters is not None:
        state["distiller"] = cpu_state(adapters)
    return state


def rng_state() -> dict:
    """Every global RNG's state, in weights_only-loadable types."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` saved (CUDA only when both sides have it)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_resume_checkpoint(path: str | Path) -> dict:
    """A last.pt with its training state; best.pt or a foreign file fails naming the file."""
    ckpt = read_checkpoint(path)
    missing = [k for k in TRAIN_STATE_KEYS if k not in ckpt]
    if missing:
        raise WeightsError(f"{path}: no training state ('{missing[0]}' missing): resume from a run's weights/last.pt")
    return ckpt


def read_unfinished_run(path: str | Path, epochs: int, hours: float | None) -> dict:
    """`read_resume_checkpoint`, refusing a run that already ran its `epochs` (or its train.time of `hours`); the
    refusal first removes the run's stale temporary files and rebuilds a missing best.pt, so the run is whole."""
    ckpt = read_resume_checkpoint(path)
    if ckpt["epoch"] >= epochs or finished(ckpt.get("train_seconds", 0.0), hours):
        weights = Path(path).parent
        remove_stale_temps(weights)
        rebuilt = " (best.pt rebuilt from it: the run stopped before writing it)" if repair_best(weights) else ""
        used = f"train.time={hours:g} h" if hours is not None else f"{epochs} epochs"
        raise ConfigError(f"{path}: the run already finished its {used}; nothing to resume{rebuilt}")
    return ckpt


def resume_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """The config saved in last.pt `path`, with `resume` set and the allowed `overrides` applied."""
    ckpt = read_resume_checkpoint(path)
    overrides = dict(overrides or {})
    for key in overrides:
        if key not in RESUME_OVERRIDES:
            raise ConfigError(
                f"'{key}' cannot change when resuming (the run continues as saved in {path}); "
                f"allowed: {', '.join(k for k in RESUME_OVERRIDES if k != 'resume')}"
            )
    overrides["resume"] = str(path)
    raw = apply_overrides(ckpt["config"], overrides)
    return config_from_dict(raw, f"{path}: ")


def run_dir_of(last_pt: str | Path) -> Path:
    """runs/<command>/<name>/weights/last.pt -> runs/<command>/<name>."""
    return Path(last_pt).resolve().parent.parent

