"""Presets: YAML files shipped in `segkd.presets` (the repo's presets/ folder), found by name or path.

A preset may extend another with `base: NAME` (a shipped preset) or `base: FILE.yaml` (a relative file is found
beside the preset that names it, not in the working directory); mappings merge key by key, lists and scalars
replace. A preset that sets other `train.epochs` than its base scales the base's phases (`segkd.config.recipe`).
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

import yaml

from segkd.config.recipe import dotted_keys, scale_phases
from segkd.errors import ConfigError

PRESET_SUFFIX = ".yaml"


def preset_names() -> list[str]:
    """Names of the shipped presets, sorted."""
    folder = resources.files("segkd.presets")
    return sorted(p.name[: -len(PRESET_SUFFIX)] for p in folder.iterdir() if p.name.endswith(PRESET_SUFFIX))


def preset_path(name_or_path: str) -> Path:
    """The file of a shipped preset `name`, or `name_or_path` itself when it is a YAML file."""
    if name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"{name_or_path}: preset file not found")
        return path
    path = Path(str(resources.files("segkd.presets") / (name_or_path + PRESET_SUFFIX)))
    if not path.is_file():
        near = difflib.get_close_matches(name_or_path, preset_names(), n=1, cutoff=0.5)
        hint = f", did you mean '{near[0]}'?" if near else " (see `segkd presets`)"
        raise ConfigError(f"unknown preset '{name_or_path}'{hint}")
    return path


def read_yaml(path: Path) -> dict:
    """Parse a YAML mapping with `safe_load`; errors name the file."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a preset must be a YAML mapping")
    return data


def deep_merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`: nested mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve_preset(name_or_path: str, _chain: tuple[str, ...] = ()) -> dict:
    """The preset as one raw dict with its `base:` chain merged in, plus `preset: NAME`."""
    path = preset_path(name_or_path)
    if str(path) in _chain:
        raise ConfigError(f"{path}: 'base' chain loops ({' -> '.join(_chain + (str(path),))})")
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: base={base!r} is not a preset name")
        if base.endswith((".yaml", ".yml")) and not Path(base).is_absolute():
            base = str(path.parent / base)
        parent = resolve_preset(base, _chain + (str(path),))
        merged = deep_merge(parent, data)
        scale_phases(merged, (parent.get("train") or {}).get("epochs"), dotted_keys(data))
        data = merged
    data["preset"] = path.stem
    return data
