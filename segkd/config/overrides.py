"""Ultralytics-style `key=value` overrides with dotted keys, parsed once.

Values are read as YAML scalars or flow collections: `null`/`none` -> None, `true` -> True, `10` -> 10,
`[512,512]` -> [512, 512], anything else stays a string.
"""

from __future__ import annotations

from typing import Any

import yaml

from segkd.errors import ConfigError


def parse_value(text: str) -> Any:
    if text.lower() in ("none", "null", "~"):
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """['train.epochs=10', 'name=x'] -> {'train.epochs': 10, 'name': 'x'}; a malformed argument is an error."""
    out: dict[str, Any] = {}
    for arg in args:
        key, sep, text = arg.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"'{arg}' is not a key=value override (e.g. train.epochs=10)")
        out[key] = parse_value(text.strip())
    return out


def apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """Set each dotted key in a copy of `raw`; intermediate sections are created as needed.

    Key names are checked later against the schema (so the error can name the nearest valid key).
    """
    out = _copy(raw)
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for i, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"cannot set '{dotted}': '{'.'.join(parents[: i + 1])}' is not a section")
            node = child
        node[leaf] = value
    return out


def _copy(d: dict) -> dict:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in d.items()}
