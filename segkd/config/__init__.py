"""Configuration: presets (YAML), `key=value` overrides and the validated `Config` they resolve to."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from segkd.config.overrides import apply_overrides, parse_overrides
from segkd.config.presets import preset_names, preset_path, resolve_preset
from segkd.config.recipe import scale_phases
from segkd.config.schema import (
    Config,
    DataConfig,
    DistillConfig,
    EvalConfig,
    ModelConfig,
    QuantConfig,
    TeacherConfig,
    TrainConfig,
)
from segkd.config.validate import build_config, valid_keys
from segkd.outputs import atomic_write

__all__ = [
    "Config", "DataConfig", "DistillConfig", "EvalConfig", "ModelConfig", "QuantConfig", "TeacherConfig", "TrainConfig",
    "config_from_dict", "config_to_dict", "dump_config", "load_config", "parse_overrides", "preset_names",
    "preset_path", "resolve_preset", "size_hw", "valid_keys",
]


def load_config(preset: str, overrides: list[str] | dict | None = None, notes: list[str] | None = None) -> Config:
    """Resolve `preset` (name or YAML path), apply overrides, validate once.

    An overridden `train.epochs` scales the preset's phases (`segkd.config.recipe`); what changed is appended to
    `notes` (one line) when a list is given.
    """
    raw = resolve_preset(preset)
    cfg = build_config(raw, f"{preset_path(preset)}: ")  # the preset alone must be valid: errors name its file
    if overrides:
        parsed = parse_overrides(overrides) if isinstance(overrides, list) else overrides
        merged = apply_overrides(raw, parsed)
        scaled = scale_phases(merged, raw.get("train", {}).get("epochs"), set(parsed))
        cfg = build_config(merged)
        if scaled and notes is not None:
            notes.append(f"train.epochs={cfg.train.epochs}: the preset's {raw['train']['epochs']}-epoch recipe "
                         f"scales to the run ({', '.join(scaled)})")
    if not cfg.name:
        cfg.name = cfg.preset
    return cfg


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(raw: dict, where: str = "") -> Config:
    """Rebuild a `Config` from `config_to_dict` output (e.g. the copy stored in a checkpoint)."""
    return build_config(raw, where)


def dump_config(cfg: Config, path: Path | None = None) -> str:
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)
    if path is not None:
        with atomic_write(path, "w") as f:
            f.write(text)
    return text


def size_hw(size: int | list[int]) -> tuple[int, int]:
    """A config size (side or [H, W]) as (H, W)."""
    if isinstance(size, int):
        return size, size
    if len(size) == 1:
        return size[0], size[0]
    return size[0], size[1]
