"""Ctrl-C during training: the first SIGINT asks the loop to stop at the next step boundary (it saves last.pt and
says how to resume); a second one raises KeyboardInterrupt at once."""

from __future__ import annotations

import signal
import threading
from typing import Callable


class StopRequest:
    """A context in which SIGINT sets `requested` (and calls `on_first`) instead of raising, once."""

    def __init__(self, on_first: Callable[[], None] = lambda: None):
        self.on_first = on_first
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True
        self.on_first()

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
