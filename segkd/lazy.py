"""Packages whose submodules load on first use (PEP 562), so the CLI answers usage and config errors at once.

    # segkd/engine/__init__.py
    __getattr__ = submodules_on_demand(__name__)

`from segkd import engine` then costs nothing; `engine.trainer.Trainer` imports `segkd.engine.trainer` (and
PyTorch) the first time a command gets that far, after its options and config were checked.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Callable


def submodules_on_demand(package: str) -> Callable[[str], ModuleType]:
    """A module `__getattr__` that imports `package.<name>` when `<name>` is first looked up."""

    def __getattr__(name: str) -> ModuleType:
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{package}.{name}":
                raise
            raise AttributeError(f"module '{package}' has no attribute '{name}'") from None

    return __getattr__
