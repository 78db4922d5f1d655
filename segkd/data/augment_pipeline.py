"""Building an op list (a preset's `augment:` or an offline recipe) from the one op registry.

The registry is `segkd.data.augment_ops.OPS`: segkd's own ops are defined there, the albumentations-backed
ones in `segkd.data.augment_albu`, which this module imports so that the registry is complete. No torch here:
`segkd augment`'s worker processes import this and nothing of the training side.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

import segkd.data.augment_albu  # noqa: F401  (registers the albumentations ops)
from segkd.data.augment_ops import OPS, AugmentContext, ImageMask, op_parameters
from segkd.errors import ConfigError


def build_ops(ops: list[dict] | None, ctx: AugmentContext) -> tuple[list[Callable[..., ImageMask]], list[str]]:
    """Every op of an op list built from the registry, and their names; ConfigError names the position."""
    if ops is not None and not isinstance(ops, list):
        raise ConfigError(f"augment: expected a list of ops, got {type(ops).__name__}")
    built, names = [], []
    for i, spec in enumerate(ops or []):
        where = f"augment[{i}]"
        if not isinstance(spec, dict) or "op" not in spec:
            raise ConfigError(f"{where}: expected a mapping with an 'op' key, got {spec!r}")
        name, params = spec["op"], {k: v for k, v in spec.items() if k != "op"}
        built.append(_build_op(name, params, ctx, where))
        names.append(str(name))
    return built, names


def _build_op(name: Any, params: dict, ctx: AugmentContext, where: str) -> Callable[..., ImageMask]:
    if name not in OPS:
        near = difflib.get_close_matches(str(name), list(OPS), n=1, cutoff=0.5)
        hint = f", did you mean '{near[0]}'?" if near else f" (ops: {', '.join(sorted(OPS))})"
        raise ConfigError(f"{where}: unknown op '{name}'{hint}")
    cls = OPS[name]
    accepted = op_parameters(cls)
    for key in params:
        if key not in accepted:
            near = difflib.get_close_matches(str(key), accepted, n=1, cutoff=0.5)
            hint = f", did you mean '{near[0]}'?" if near else f" (parameters: {', '.join(accepted) or 'none'})"
            raise ConfigError(f"{where}: op '{name}' has no parameter '{key}'{hint}")
    try:
        return cls(ctx, **params)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: op '{name}': {e}") from None


def list_ops() -> list[str]:
    return sorted(OPS)
