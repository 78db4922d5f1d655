"""Every script under benchmarks/ imports against the current package (they are run by hand, not by the suite:
one went stale when the demo moved to segkd.demo and failed at its first line)."""

import importlib.util
import sys
from pathlib import Path

import pytest

FOLDER = Path(__file__).parents[1] / "benchmarks"
SCRIPTS = sorted(FOLDER.glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_a_benchmark_script_imports(script, monkeypatch):
    monkeypatch.syspath_prepend(str(FOLDER))  # as `python benchmarks/x.py` runs it: its siblings import
    spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)  # runs its imports and definitions, not main()
    assert callable(getattr(module, "main", None))
