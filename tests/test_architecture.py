"""House rules that keep the package layered: dependencies point one way.

commands -> demo -> report -> engine / deploy -> models / losses / data, with config and errors usable everywhere;
quant (fake quantisation, torch only) sits below models.
"""

import ast
from pathlib import Path

import segkd

PACKAGE = Path(segkd.__file__).parent

# layer -> the layers it must never import
FORBIDDEN = {
    "models": {"engine", "commands", "deploy", "cli", "losses", "data"},
    "losses": {"engine", "commands", "deploy", "cli"},
    "data": {"engine", "commands", "deploy", "cli", "models", "losses"},
    "config": {"engine", "commands", "deploy", "cli", "models", "losses", "data"},
    "engine": {"commands", "cli"},
    "deploy": {"commands", "cli"},
    "demo": {"commands", "cli"},
    "report": {"commands", "cli", "demo"},
    "commands": {"cli"},
    "quant": {"engine", "commands", "deploy", "cli", "models", "losses", "data"},
}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {m for m in found if m.startswith("segkd.")}


def test_no_backward_imports():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        module = "segkd." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        layer = _layer(module)
        for target in _imports(path):
            if _layer(target) in FORBIDDEN.get(layer, set()):
                bad.append(f"{module} imports {target}")
    assert not bad, "backward imports:\n" + "\n".join(sorted(bad))


def test_no_function_level_segkd_imports():
    """Imports happen at module top level; none hide inside functions to dodge a cycle."""
    bad = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("segkd"):
                        bad.append(f"{path.name}:{node.lineno} {node.module}")
                    if isinstance(node, ast.Import) and any(a.name.startswith("segkd") for a in node.names):
                        bad.append(f"{path.name}:{node.lineno}")
    assert not bad, "function-level imports:\n" + "\n".join(bad)
