"""The run folder of one `train`/`distill` run: what the trainer writes, and only the main process writes it.

```
runs/<command>/<name>/
    config.yaml          the resolved config (written once, at the start)
    results.csv          one row per epoch (rewritten atomically)
    plots/*.png          loss, metrics and lr curves (refreshed at most every PLOT_EVERY_S)
    tensorboard/         when train.tensorboard is on and the package is installed
    weights/last.pt      every epoch, with the state to resume (written first: see `repair_best`)
    weights/best.pt      when val mIoU improves
    weights/epochN.pt    every train.save_period epochs
```
`RunWriter.guard()` refuses, before any work, a folder whose files segkd did not write; `open()` makes the folder
(or reopens it on resume: stale temporary files removed, best.pt rebuilt when a crash fell between the two saves,
results.csv cut back to the resumed epoch); `remove_if_unused()` removes a folder that a failed run made and saved
nothing in. Checkpoint payloads come from the trainer (`payload(training)`), so this module knows files, not models.
"""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from segkd.config import Config, dump_config
from segkd.engine.checkpointing import atomic_save, repair_best, run_dir_of
from segkd.engine.results import ResultsCSV, TensorBoardLogger, plot_results, tensorboard_available
from segkd.engine.runs import make_run_dir
from segkd.outputs import guard_outputs, make_dirs, remove_stale_temps

PLOT_EVERY_S = 30.0  # plots/ refresh at most this often (drawing costs ~0.1-0.5 s), and always after the last epoch


class RunWriter:
    """Files of one run under `save_dir`; `main=False` (a DDP rank other than 0) knows the folder, writes nothing."""

    def __init__(self, cfg: Config, command: str, inputs: list[str | None], main: bool,
                 log: Callable[[str], None]):
        self.cfg, self.command, self.inputs, self.main, self.log = cfg, command, inputs, main, log
        self.save_dir: Path | None = None
        self.weights_dir: Path | None = None
        self.results_csv: ResultsCSV | None = None
        self.tensorboard: TensorBoardLogger | None = None
        self._made = False  # this run created save_dir (so a failure before any checkpoint removes it)
        self._plotted_at = float("-inf")

    @property
    def name(self) -> str:
        return self.cfg.name or self.cfg.preset or self.command

    @staticmethod
    def outputs(save_dir: Path) -> list[Path]:
        """The files a run writes under `save_dir` (what the output guard checks before any work)."""
        weights = save_dir / "weights"
        return [save_dir / "config.yaml", save_dir / "results.csv", weights / "last.pt", weights / "best.pt",
                *(save_dir / "plots" / f for f in ("loss.png", "metrics.png", "lr.png"))]

    def guard(self) -> None:
        """The output guard on the run folder this run will make (refusals happen before any work)."""
        cfg = self.cfg
        planned = make_run_dir(cfg.project, self.command, self.name, cfg.exist_ok, create=False)
        guard_outputs(self.outputs(planned), self.inputs, force=cfg.exist_ok, force_hint="exist_ok=true")

    def open(self, resume_from: int | None) -> None:
        """Make the run folder (`resume_from=None`) or reopen the one that `cfg.resume` belongs to."""
        cfg = self.cfg
        if resume_from is not None:
            self.save_dir = run_dir_of(cfg.resume)
        elif self.main:
            self._made = not (Path(cfg.project) / self.command / self.name).exists() or not cfg.exist_ok
            self.save_dir = make_run_dir(cfg.project, self.command, self.name, cfg.exist_ok)
        if self.save_dir is None:
            return
        self.weights_dir = self.save_dir / "weights"
        self.results_csv = ResultsCSV(self.save_dir / "results.csv")
        if not self.main:
            return
        make_dirs(self.weights_dir)
        for folder in (self.save_dir, self.weights_dir):
            remove_stale_temps(folder)
        if repair_best(self.weights_dir) is not None:
            self.log(f"note: {self.weights_dir / 'best.pt'} rebuilt from last.pt (the run stopped between the two)")
        if resume_from is not None:
            self.results_csv.keep_until(resume_from)
        else:
            stored = copy.deepcopy(cfg)
            stored.resume = None
            dump_config(stored, self.save_dir / "config.yaml")
        if cfg.train.tensorboard:
            if tensorboard_available():
                self.tensorboard = TensorBoardLogger(self.save_dir / "tensorboard")
            else:
                self.log("[yellow]warning:[/] train.tensorboard=true but the tensorboard package is not installed")

    def write_epoch(self, row: dict[str, Any], payload: Callable[[bool], dict[str, Any]], improved: bool) -> None:
        """results.csv row, plots, last.pt (+ best.pt, epochN.pt) of the epoch `row["epoch"]`; checkpoints atomic."""
        self.results_csv.append(row)
        done = int(row["epoch"])
        now = time.perf_counter()
        if done == self.cfg.train.epochs or now - self._plotted_at >= PLOT_EVERY_S:
            plot_results(self.results_csv.rows(), self.save_dir / "plots")
            self._plotted_at = now
        if self.tensorboard is not None:
            self.tensorboard.log(row)
        atomic_save(payload(True), self.weights_dir / "last.pt")  # first: see repair_best
        if improved:
            atomic_save(payload(False), self.weights_dir / "best.pt")
        period = self.cfg.train.save_period
        if period and done % period == 0:
            atomic_save(payload(False), self.weights_dir / f"epoch{done}.pt")

    def save_last(self, checkpoint: dict[str, Any]) -> Path:
        """last.pt now (a Ctrl-C mid-epoch); returns its path."""
        last = self.weights_dir / "last.pt"
        if self.main:
            atomic_save(checkpoint, last)
        return last

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()

    def remove_if_unused(self) -> None:
        """Remove the folder this run made when nothing was saved in it (no empty runs/train/x2/ after a failure)."""
        saved = self.weights_dir is not None and any(p.is_file() for p in self.weights_dir.rglob("*"))
        if self._made and self.main and self.save_dir is not None and not saved:
            shutil.rmtree(self.save_dir, ignore_errors=True)
