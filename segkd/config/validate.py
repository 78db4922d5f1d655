"""Turn a raw nested dict into a typed `Config`, once, before any work starts.

Unknown keys fail naming the nearest valid key; values of the wrong type fail naming the key, the value and
the expected type.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union

from segkd.config.schema import Config
from segkd.errors import ConfigError


def valid_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of a dataclass schema, nested sections included."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        keys.append(key)
        section = _dataclass_in(hints[f.name])
        if section is not None:
            keys += valid_keys(section, key + ".")
    return keys


def unknown_key_error(key: str, where: str = "") -> ConfigError:
    near = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.5)
    hint = f", did you mean '{near[0]}'?" if near else ""
    return ConfigError(f"{where}unknown key '{key}'{hint}")


# key -> (lowest allowed, whether the bound is exclusive)
_LOWER_BOUNDS = {
    "model.num_classes": (1, False), "data.ignore_index": (0, False), "data.workers": (0, False),
    "data.images": (1, False), "train.epochs": (1, False), "train.batch_size": (1, False), "train.lr": (0, True),
    "train.min_lr": (0, False), "train.time": (0, True), "train.weight_decay": (0, False), "train.accumulate": (1, False),
    "train.val_interval": (1, False), "train.save_period": (0, False), "train.freeze_epochs": (0, False),
    "train.warmup_epochs": (0, False), "train.warmup_iters": (0, False), "train.min_lr_epochs": (0, False),
    "distill.batch_size": (1, False), "train.seed": (0, False), "train.nan_patience": (1, False), "distill.normalize_steps": (1, False),
    "quant.start_epoch": (0, False), "quant.calib_batches": (1, False), "quant.lr_mult": (0, False),
}


def build_config(raw: dict, where: str = "") -> Config:
    """Validate `raw` against the schema and build the dataclasses. `where` prefixes messages (a file name)."""
    cfg = _build(Config, raw, "", where)
    _check_ranges(cfg, where)
    return cfg


def _check_ranges(cfg: Config, where: str) -> None:
    for key, (low, exclusive) in _LOWER_BOUNDS.items():
        node: Any = cfg
        for part in key.split("."):
            node = getattr(node, part, None) if node is not None else None
        if node is None:
            continue
        if node < low or (exclusive and node == low):
            sign = ">" if exclusive else ">="
            raise ConfigError(f"{where}{key}={node!r} must be {sign} {low}")
    if cfg.quant.start_epoch is not None and cfg.quant.start_epoch >= cfg.train.epochs:
        raise ConfigError(f"{where}quant.start_epoch={cfg.quant.start_epoch} must be < train.epochs="
                          f"{cfg.train.epochs} (0-based: QAT runs from that epoch to the last)")
    sizes = [("data.input_size", cfg.data.input_size)]
    if cfg.distill is not None:
        sizes.append(("distill.teacher.input_size", cfg.distill.teacher.input_size))
    for key, size in sizes:
        sides = [size] if isinstance(size, int) else size
        if size is not None and (not 1 <= len(sides) <= 2 or min(sides) < 1):
            raise ConfigError(f"{where}{key}={size!r} must be a positive side or [H, W]")


def _build(cls: type, raw: Any, prefix: str, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise unknown_key_error(prefix + str(key), where)
    values = {}
    for name, value in raw.items():
        values[name] = _check(value, hints[name], prefix + name, where)
    return cls(**values)


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass inside `tp` (itself, or the non-None member of an Optional), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if _is_union(tp):
        found = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return found[0] if found else None
    return None


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _type_name(tp: Any) -> str:
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"a list of {_type_name(item)}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string", dict: "a mapping"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _check(value: Any, tp: Any, key: str, where: str) -> Any:
    """Return `value` converted to `tp` (int -> float, '1e-4' -> float), or raise naming the key."""
    try:
        return _convert(value, tp, key, where)
    except _Mismatch:
        raise ConfigError(f"{where}{key}={value!r} is not {_type_name(tp)}") from None


class _Mismatch(Exception):
    pass


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if value is None:
            raise _Mismatch
        return _build(tp, value, key + ".", where)
    if _is_union(tp):
        members = typing.get_args(tp)
        if value is None and type(None) in members:
            return None
        for member in members:  # first that fits; ConfigError from a nested section is final
            try:
                return _convert(value, member, key, where)
            except _Mismatch:
                continue
        raise _Mismatch
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise _Mismatch
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        (item,) = typing.get_args(tp) or (Any,)
        return [_convert(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if tp is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    raise TypeError(f"schema type {tp!r} of '{key}' is not supported")
