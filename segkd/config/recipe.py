"""Recipes scale with the run: a preset's phases in epochs follow `train.epochs` when it is set anew.

A paper preset writes its phases for its own run length (FastSegFormer: 3 warm-up epochs, 15 epochs at min_lr and
a 50-epoch backbone freeze in 1000 epochs). When `train.epochs` is set to E on the command line, or by a preset
that extends another (`base:`), every phase the recipe gives in epochs or iterations scales by E / (its epochs):

    train.warmup_epochs, train.warmup_iters, train.min_lr_epochs, train.freeze_epochs, distill.freeze_epochs

so a 20-epoch run of the 1000-epoch recipe warms up for 0.06 epochs, holds min_lr for the last 0.3 and freezes
the backbone for 1. A phase set in the same place as the new epochs is taken as written. The resolved config
(config.yaml, checkpoints) holds the scaled values, so a resumed run continues with them.
"""

from __future__ import annotations

from typing import Any

#: (dotted key, rounded to whole units) of every phase counted in epochs or iterations
PHASES = (
    ("train.warmup_epochs", False),
    ("train.warmup_iters", True),
    ("train.min_lr_epochs", False),
    ("train.freeze_epochs", True),
    ("distill.freeze_epochs", True),
)


def scale_phases(raw: dict, recipe_epochs: Any, explicit: set[str]) -> list[str]:
    """Scale, in place, the phases of `raw` by raw's train.epochs / `recipe_epochs`, except the `explicit` keys.

    Returns one note per changed phase ("train.warmup_epochs 3 -> 0.06"); none when the epochs are unchanged.
    """
    epochs = (raw.get("train") or {}).get("epochs")
    if not _is_count(recipe_epochs) or not _is_count(epochs) or recipe_epochs == epochs:
        return []
    notes = []
    for key, whole in PHASES:
        section, name = key.split(".")
        node = raw.get(section)
        value = node.get(name) if isinstance(node, dict) and key not in explicit else None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            continue
        node[name] = round(value * epochs / recipe_epochs) if whole else round(value * epochs / recipe_epochs, 4)
        notes.append(f"{key} {value:g} -> {node[name]:g}")
    return notes


def dotted_keys(tree: dict, prefix: str = "") -> set[str]:
    """{'train': {'epochs': 3}} -> {'train', 'train.epochs'}."""
    keys = set()
    for key, value in tree.items():
        keys.add(prefix + str(key))
        if isinstance(value, dict):
            keys |= dotted_keys(value, f"{prefix}{key}.")
    return keys


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
