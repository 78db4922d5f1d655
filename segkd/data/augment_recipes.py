"""Offline augmentation recipes: a built-in name or a YAML file, in one of three forms.

    - {op: hflip, p: 0.5}                      # 1. a bare op list: exactly a preset's `augment:` section
    - {op: affine, rotate: 15, p: 0.7}

    mask_pad: background                       # 2. the op list with the fill rules (all optional)
    pad_value: 128
    ignore_index: 255
    augment: [{op: hflip, p: 0.5}]

    {__version__: 2.0.8, transform: {...}}     # 3. an albumentations pipeline saved by A.to_dict / A.save

Built-in recipes live in `segkd/data/recipes/<name>.yaml` (form 2). Ops come from the same registry as the
online pipeline, so the op list of a recipe file can be pasted into a preset's `augment:` unchanged.
New mask pixels take `ignore_index` (`mask_pad: ignore`, default) or 0 (`mask_pad: background`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from segkd.errors import ConfigError

RECIPE_DIR = Path(__file__).parent / "recipes"
RECIPE_KEYS = ("augment", "mask_pad", "pad_value", "ignore_index")


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class Recipe:
    """An op list and its fill rules; `ops` is what a preset's `augment:` holds."""

    name: str  # built-in name or the file's path
    ops: list[dict] = field(default_factory=list)
    mask_pad: str = "ignore"
    pad_value: int = 128
    ignore_index: int = 255

    @property
    def mask_fill(self) -> int:
        return 0 if self.mask_pad == "background" else self.ignore_index


def load_recipe(spec: str | Path) -> Recipe:
    """A built-in recipe by name, or a recipe file; ConfigError naming the file and the key when it is wrong."""
    path = Path(spec)
    if str(spec) in recipe_names():
        path = RECIPE_DIR / f"{spec}.yaml"
    elif path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        near = difflib.get_close_matches(str(spec), recipe_names(), n=1, cutoff=0.6)
        hint = f", did you mean '{near[0]}'?" if near else f" (recipes: {', '.join(recipe_names())}, or a .yaml file)"
        what = "recipe file not found" if path.suffix.lower() in (".yaml", ".yml") else "unknown recipe"
        raise ConfigError(f"{spec}: {what}{hint}")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: unreadable recipe ({str(e).splitlines()[0]})") from None
    name = str(spec)
    if isinstance(doc, list):
        return Recipe(name, doc)
    if isinstance(doc, dict) and "transform" in doc:
        return Recipe(name, [{"op": "albumentations", "pipeline": doc}])
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a recipe is an op list, a mapping with 'augment:', or an albumentations "
                          f"pipeline (A.to_dict); got {type(doc).__name__}")
    for key in doc:
        if key not in RECIPE_KEYS:
            near = difflib.get_close_matches(str(key), RECIPE_KEYS, n=1)
            raise ConfigError(f"{path}: unknown key '{key}'" + (f", did you mean '{near[0]}'?" if near else
                                                                 f" (keys: {', '.join(RECIPE_KEYS)})"))
    recipe = Recipe(name, doc.get("augment") or [], doc.get("mask_pad", "ignore"), doc.get("pad_value", 128),
                    doc.get("ignore_index", 255))
    if recipe.mask_pad not in ("ignore", "background"):
        raise ConfigError(f"{path}: mask_pad={recipe.mask_pad!r} is not 'ignore' or 'background'")
    for key in ("pad_value", "ignore_index"):
        value = getattr(recipe, key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
            raise ConfigError(f"{path}: {key}={value!r} is not an integer 0..255")
    return recipe
