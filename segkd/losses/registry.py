"""The loss registry: loss classes recorded by name and built from a preset's YAML spec.

    loss:
      - {name: ce, weight: 1.0, ohem_thresh: 0.7}
      - {name: lovasz, weight: 0.2}

`build_loss({"name": "ce", "weight": 1.0, ...})` returns `(name, weight, module)`; every other key of the
spec is a constructor argument, and an unknown one fails naming it.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

from torch import nn

from segkd.errors import ConfigError

_losses: dict[str, type[nn.Module]] = {}


def register_loss(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _losses:
            raise RuntimeError(f"loss '{name}' is registered twice")
        _losses[name] = cls
        return cls

    return deco


def list_losses() -> list[str]:
    return sorted(_losses)


def loss_class(name: str) -> type[nn.Module]:
    if name not in _losses:
        near = difflib.get_close_matches(str(name), list(_losses), n=1, cutoff=0.5)
        hint = f", did you mean '{near[0]}'?" if near else f" (known: {', '.join(list_losses())})"
        raise ConfigError(f"unknown loss '{name}'{hint}")
    return _losses[name]


def build_loss(
    spec: dict[str, Any], where: str = "loss", defaults: dict[str, Any] | None = None
) -> tuple[str, float, nn.Module]:
    """(name, weight, module) from `{name|loss: ..., weight: ..., **kwargs}`.

    `defaults` fill constructor arguments the spec leaves out, where the loss takes them (e.g. the data's
    ignore index).
    """
    spec = dict(spec)
    name = spec.pop("name", None) or spec.pop("loss", None)
    if name is None:
        raise ConfigError(f"{where}: a term needs a 'name'")
    weight = spec.pop("weight", 1.0)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool):
        raise ConfigError(f"{where}: weight={weight!r} of loss '{name}' is not a number")
    cls = loss_class(name)
    params = inspect.signature(cls).parameters
    spec = {k: v for k, v in (defaults or {}).items() if k in params} | spec
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        for key in spec:
            if key not in params:
                raise ConfigError(
                    f"{where}: loss '{name}' has no option '{key}' (options: {', '.join(params) or 'none'})"
                )
    return str(name), float(weight), cls(**spec)
