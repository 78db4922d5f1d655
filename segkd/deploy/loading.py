"""Load the PyTorch model to deploy: a segkd checkpoint alone, or any weights file with a preset (foreign layouts).

Only the model itself is loaded (a distillation checkpoint's student; teachers and adapters are never part of a
checkpoint's `model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from segkd.config import config_to_dict, load_config
from segkd.deploy.meta import DeployMeta
from segkd.errors import ConfigError, WeightsError
from segkd.models import build_model, load_checkpoint, load_weights, read_checkpoint


@dataclass
class LoadedModel:
    model: nn.Module  # eval mode, on the CPU
    meta: DeployMeta
    config: dict  # the resolved config it was built from
    name: str  # run / file name: the config's name, else the weights file's stem


def is_onnx(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def load_model(weights: str | Path, preset: str | None = None, overrides: list[str] | None = None) -> LoadedModel:
    """A segkd checkpoint rebuilds itself; with `preset`, any file `load_weights` understands."""
    path = Path(weights)
    if is_onnx(path):
        raise WeightsError(f"{path}: an ONNX file, not PyTorch weights (pass a .pt checkpoint)")
    if preset is not None:
        config = config_to_dict(load_config(preset, overrides))
        model = load_weights(build_model(config["model"]), path).eval()
    else:
        if overrides:
            raise ConfigError(f"overrides {overrides[0]!r}...: key=value overrides need --preset")
        config = read_checkpoint(path)["config"]
        model = load_checkpoint(path)
    meta = DeployMeta.from_config(config)
    return LoadedModel(model, meta, config, config.get("name") or path.stem)
