"""Named training events (Ultralytics-style): extra behaviour hangs on these, never on a rewritten loop.

Each callback is `fn(trainer)`; it reads what it needs from the trainer (`epoch`, `metrics`, `results`, paths).

    on_train_start        once, after setup (model, data, optimizer, run folder ready)
    on_train_epoch_start  before the first batch of an epoch
    on_train_batch_end    after every batch (`trainer.batch_losses` holds the batch's terms)
    on_train_epoch_end    after the last batch, before validation
    on_fit_epoch_end      after validation and saving (`trainer.metrics`, `trainer.results` filled)
    on_model_save         right after last.pt / best.pt are written
    on_train_end          once, after the last epoch (`trainer.summary` filled)
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

from segkd.errors import ConfigError

EVENTS = (
    "on_train_start",
    "on_train_epoch_start",
    "on_train_batch_end",
    "on_train_epoch_end",
    "on_fit_epoch_end",
    "on_model_save",
    "on_train_end",
)

Callback = Callable[[Any], None]


def new_callbacks() -> dict[str, list[Callback]]:
    """An empty callback table: one list per event."""
    return {event: [] for event in EVENTS}


def add_callback(callbacks: dict[str, list[Callback]], event: str, fn: Callback) -> None:
    """Append `fn` to `event`; an unknown event fails naming the closest one."""
    if event not in callbacks:
        near = difflib.get_close_matches(event, EVENTS, n=1)
        hint = f", did you mean '{near[0]}'?" if near else f" (events: {', '.join(EVENTS)})"
        raise ConfigError(f"unknown training event '{event}'{hint}")
    callbacks[event].append(fn)


def run_callbacks(callbacks: dict[str, list[Callback]], event: str, trainer: Any) -> None:
    """Call every callback of `event` in the order they were added."""
    for fn in callbacks[event]:
        fn(trainer)
