"""What several test files share: another folder's fixture module loaded by path, and flattened CLI output.

conftest.py files are not importable by name, so `load_test_module` loads one by path and registers it in
`sys.modules` under `name` (once): the tiny models it registers stay importable by that name, which
`load_weights` needs (it looks a model's family module up by `type(model).__module__`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).parent


def load_test_module(name: str, relpath: str) -> ModuleType:
    """tests/`relpath` as module `name`."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS / relpath)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flat(result) -> str:
    """A CLI result's output with the console's line wrapping undone."""
    return " ".join(result.output.split())
