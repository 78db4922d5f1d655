"""The model registry: entrypoints recorded by name, built with `create_model` (timm style).

Registration happens because `segkd/models/__init__.py` imports every family file, and nothing else does.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Callable

from torch import nn

from segkd.errors import ConfigError

_entrypoints: dict[str, Callable[..., nn.Module]] = {}
_families: dict[str, str] = {}  # entrypoint name -> family (the module it lives in)


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: record an entrypoint under its function name."""
    name = fn.__name__
    if name in _entrypoints:
        raise RuntimeError(f"model '{name}' is registered twice")
    _entrypoints[name] = fn
    _families[name] = fn.__module__.rsplit(".", 1)[-1]
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob pattern, sorted."""
    return sorted(n for n in _entrypoints if fnmatch.fnmatch(n, pattern))


def model_family(name: str) -> str:
    return _families[_entrypoint_name(name)]


def _entrypoint_name(name: str) -> str:
    key = name.replace("-", "_")
    if key not in _entrypoints:
        near = difflib.get_close_matches(key, list(_entrypoints), n=1, cutoff=0.5)
        hint = f", did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"unknown model '{name}'{hint}")
    return key


def create_model(name: str, num_classes: int = 19, **kwargs) -> nn.Module:
    """Build a registered model: `create_model("fastsegformer_p", num_classes=4, pyramid="ppm")`.

    Options go to the family's constructor through `segkd.models.builder.build_model_with_cfg`, which refuses
    one the model does not take, naming it. `pretrained=True` loads the backbone's ImageNet weights through
    timm's hub mechanism (offline: the local Hugging Face cache); `backbone_weights=FILE` from a local file.
    """
    model = _entrypoints[_entrypoint_name(name)](num_classes=num_classes, **kwargs)
    model.arch = _entrypoint_name(name)  # lets load_weights refuse a checkpoint of another model
    return model
