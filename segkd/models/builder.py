"""The one builder every registered entrypoint goes through (timm's `build_model_with_cfg`, in segkd's words).

`build_model_with_cfg(cls, variant, pretrained, default_cfg=..., checkpoint_filter_fn=..., fixed=..., **options)`:
1. refuses an option the entrypoint fixes itself, and an option `cls.__init__` does not declare (read from its
   signature, naming the valid ones);
2. builds `cls(**fixed, **options)` and records `default_cfg` (input size, mean/std, weight source) and the
   family's `checkpoint_filter_fn` (foreign checkpoints, see `segkd.models.checkpoint.load_weights`) on it;
3. initialises the backbone: `pretrained=True` takes its ImageNet weights through timm's hub mechanism (the
   Hugging Face cache, `HF_HOME`, `HF_HUB_OFFLINE`), `backbone_weights=FILE` from a local file; the model's
   `backbone_source` says which (None: its own init).

How a backbone loads is its own business: `backbone.load_pretrained(path_or_None) -> source` (see
`TimmBackbone`), or a family's `load_backbone(model, path_or_None) -> source`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from torch import Tensor, nn

from segkd.errors import ConfigError

M = TypeVar("M", bound=nn.Module)
FilterFn = Callable[[dict[str, Tensor], nn.Module], dict[str, Tensor]]
LoadBackbone = Callable[[nn.Module, "str | None"], str]


def model_options(cls: type) -> list[str]:
    """Keyword options `cls.__init__` declares (sorted)."""
    params = inspect.signature(cls.__init__).parameters.values()
    return sorted(p.name for p in params if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def check_options(cls: type, variant: str, options: dict, fixed: dict) -> None:
    """An option the entrypoint fixes, or one the constructor lacks, fails naming it."""
    for key in sorted(options.keys() & fixed.keys()):
        raise ConfigError(f"model '{variant}' fixes '{key}' itself: leave that option out")
    valid = [k for k in model_options(cls) if k not in fixed]
    for key in sorted(options.keys() - set(valid)):
        raise ConfigError(f"model '{variant}' has no option '{key}' (options: {', '.join(valid)})")


def load_backbone_default(model: nn.Module, path: str | None) -> str:
    return model.backbone.load_pretrained(path)


def build_model_with_cfg(
    cls: type[M],
    variant: str,
    pretrained: bool = False,
    *,
    default_cfg: dict,
    checkpoint_filter_fn: FilterFn | None = None,
    backbone_weights: str | None = None,
    load_backbone: LoadBackbone = load_backbone_default,
    fixed: dict | None = None,
    **options,
) -> M:
    """Build `variant` of family `cls`; see the module docstring."""
    fixed = dict(fixed or {})
    check_options(cls, variant, options, fixed)
    if pretrained and backbone_weights:
        raise ConfigError(f"model '{variant}': set model.pretrained=true or model.backbone_weights=FILE, not both")
    model = cls(**fixed, **options)
    model.arch = variant
    model.default_cfg = dict(default_cfg)
    model.checkpoint_filter_fn = checkpoint_filter_fn
    if pretrained or backbone_weights:
        model.backbone_source = load_backbone(model, backbone_weights or None)
    return model
