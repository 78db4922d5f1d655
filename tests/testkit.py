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


def tmpfs_run(folder: Path, argv: list[str], size: str = "256k", read_only: bool = False, env: dict | None = None):
    """Run `argv` with a fresh tmpfs of `size` mounted on `folder` (read-only when asked), in a private user +
    mount namespace (`unshare -rm`), so a test can fill a disk or make a folder read-only even as root.

    Returns the CompletedProcess; skips the test when this machine cannot create such a namespace.
    """
    import os
    import shlex
    import shutil
    import subprocess

    import pytest

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a private tmpfs")
    folder.mkdir(parents=True, exist_ok=True)
    mount = f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(folder))}"
    if read_only:
        mount += f" && mount -o remount,ro {shlex.quote(str(folder))}"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", mount], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a private tmpfs here ({probe.stderr.strip()[:100]})")
    script = f"{mount} && exec {' '.join(shlex.quote(a) for a in argv)}"
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)
