"""What a training run shows while it works: a rich bar per epoch and one summary line per epoch.

The engine never decides whether a terminal is interactive: callers pass a `rich.console.Console` (stderr) and
`progress=True|False`. Without a console the run is silent.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def format_losses(losses: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in losses.items())


class EpochProgress:
    """A bar over one epoch's batches showing the running loss terms, the lr and images per second."""

    def __init__(self, console: Console | None, enabled: bool, title: str, total: int):
        self.enabled = enabled and console is not None
        self.start = time.perf_counter()
        self.images = 0
        self._bar = None
        if self.enabled:
            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console,
            )
            self._task = self._bar.add_task(title, total=total, info="")

    def __enter__(self) -> "EpochProgress":
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    @property
    def images_per_second(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)

    def update(self, images: int, losses: dict[str, float], lr: float) -> None:
        """One batch of `images` done; `losses` are the epoch's running means."""
        self.images += images
        if self._bar is not None:
            info = f"{format_losses(losses)}  lr {lr:.2e}  {self.images_per_second:.1f} img/s"
            self._bar.update(self._task, advance=1, info=info)


def epoch_line(row: dict, epochs: int, best: bool) -> str:
    """`epoch 3/100  loss 0.41 (ce 0.41)  lr 1.00e-04  mIoU 55.20%  best  12.3s` from a results row."""
    terms = {k[len("train/"):]: v for k, v in row.items() if k.startswith("train/") and k != "train/loss"}
    loss = row.get("train/loss")  # None: every step of the epoch was skipped (non-finite)
    text = f"epoch {row['epoch']}/{epochs}  loss " + ("skipped" if loss is None else f"{loss:.4g}")
    if len(terms) > 1:
        text += f" ({format_losses(terms)})"
    text += f"  lr {row['lr']:.2e}"
    miou = row.get("val/mIoU")
    if miou is not None:
        text += f"  mIoU {100 * miou:.2f}%" + ("  [green]best[/]" if best else "")
    return text + f"  {row['time']:.1f}s"
