"""What a deployed model needs besides its weights: classes, palette and the input geometry.

A `DeployMeta` comes from a resolved config (checkpoint or preset) and travels inside every exported ONNX file
as `metadata_props`, one key per field with a JSON value, so an `.onnx` alone is enough to predict:

    arch="fastsegformer_p"  classes=["background", ...]  palette=[[0,0,0], ...]  input_size=[224,224]
    mean=[0,0,0]  std=[1,1,1]  resize="letterbox"  pad_value=128  output="logits"  precision="fp32"  ...
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from segkd import __version__
from segkd.config import size_hw
from segkd.data.palette import default_palette
from segkd.data.transforms import Preprocess


@dataclass
class DeployMeta:
    arch: str
    num_classes: int
    classes: list[str]
    palette: list[list[int]]
    input_size: list[int]  # network input [H, W]
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    resize: str = "resize"  # letterbox | resize
    pad_value: int = 128
    ignore_index: int = 255
    preset: str = ""
    output: str = "logits"  # logits (B×K×H×W) | labels (B×H×W)
    precision: str = "fp32"  # fp32 | fp16 | int8
    dynamic: list[str] = field(default_factory=list)  # dynamic axes of the graph: batch, height, width
    segkd_version: str = __version__

    @classmethod
    def from_config(cls, cfg: dict) -> "DeployMeta":
        """From a resolved config dict (a checkpoint's `config`, or `config_to_dict(load_config(...))`)."""
        data, model = cfg["data"], cfg["model"]
        k = int(model["num_classes"])
        classes = list(data.get("classes") or [])
        if len(classes) != k:
            classes = classes[:k] + [f"class{i}" for i in range(len(classes), k)]
        palette = [list(map(int, c)) for c in (data.get("palette") or default_palette(k))]
        palette = (palette + default_palette(k)[len(palette):])[:k]
        return cls(
            arch=model["arch"], num_classes=k, classes=classes, palette=palette,
            input_size=list(size_hw(data["input_size"])), mean=list(data["mean"]), std=list(data["std"]),
            resize=data["resize"], pad_value=int(data["pad_value"]), ignore_index=int(data["ignore_index"]),
            preset=cfg.get("preset") or "",
        )

    def preprocess(self) -> Preprocess:
        return Preprocess(tuple(self.input_size), self.resize, tuple(self.mean), tuple(self.std), self.pad_value)

    def replace(self, **changes) -> "DeployMeta":
        return dataclasses.replace(self, **changes)

    def to_props(self) -> dict[str, str]:
        """ONNX `metadata_props`: field name -> JSON text."""
        return {f.name: json.dumps(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "DeployMeta | None":
        """Parse `to_props` output; None when the file was not exported by segkd (a required field is missing or
        not JSON: foreign metadata that merely shares a key name)."""
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if any(key not in props for key in required):
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            values = {key: json.loads(text) for key, text in props.items() if key in names}
            return cls(**values)
        except (json.JSONDecodeError, TypeError, ValueError):
            return None

    @classmethod
    def fallback(cls, num_classes: int, input_size: tuple[int, int], name: str) -> "DeployMeta":
        """For a foreign ONNX file: generic class names, VOC palette, ImageNet mean/std, plain resize."""
        return cls(arch=name, num_classes=num_classes, classes=[f"class{i}" for i in range(num_classes)],
                   palette=default_palette(num_classes), input_size=list(input_size))
