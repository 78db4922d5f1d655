"""Engine fixtures.

Training: a tiny registered model (`tiny_seg`), a tiny VOC tree with a learnable pattern, a tiny preset file.
The pattern is a dark noisy background (class 0) with a red square (class 1) and a green square (class 2) at
random places, so pixel colour alone decides the class and a few convs learn it in a couple of epochs.
This file is also imported by path (tests/commands/test_train.py, the resume test's subprocess, the evaluator
tests), so registration is guarded.

Evaluation: deterministic fake models (`ColourNet`) and an in-memory dataset (`ListDataset`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from segkd.models import SegmentationModel, list_models, register_model

torch.set_num_threads(1)  # tiny tensors: threads only add contention on a shared 2-core machine

# -- training fixtures -------------------------------------------------------------------------------------
CLASSES = ["background", "red", "green"]


class TinySeg(SegmentationModel):
    """conv-bn-relu ×2 (stride 4) backbone + 1×1 head: the smallest model honouring the contract."""

    size_divisor = 4

    def __init__(self, num_classes: int = 3, width: int = 8, backbone_weights: str | None = None):
        super().__init__()
        self.backbone = nn.Sequential(  # cumulative BN averages: eval matches train after a few steps
            nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width, momentum=None), nn.ReLU(),
            nn.Conv2d(width, width, 3, 2, 1), nn.BatchNorm2d(width, momentum=None), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, num_classes, 1))
        if backbone_weights:
            self.backbone.load_state_dict(torch.load(backbone_weights, weights_only=True))


if "tiny_seg" not in list_models():

    @register_model
    def tiny_seg(num_classes: int = 3, **kwargs) -> TinySeg:
        return TinySeg(num_classes, **kwargs)


def make_voc_tree(root: Path, n_train: int = 8, n_val: int = 4, size: int = 48, seed: int = 0,
                  classes_txt: bool = False) -> Path:
    """A VOC layout: JPEGImages/*.png, SegmentationClass/*.png, ImageSets/Segmentation/{train,val}.txt."""
    rng = np.random.default_rng(seed)
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    stems = [f"img{i:03d}" for i in range(n_train + n_val)]
    for stem in stems:
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        for cls, colour in ((1, (220, 30, 30)), (2, (30, 220, 30))):
            side = int(rng.integers(size // 5, size // 2))
            top, left = rng.integers(0, size - side, 2)
            image[top : top + side, left : left + side] = colour
            mask[top : top + side, left : left + side] = cls
        cv2.imwrite(str(root / "JPEGImages" / f"{stem}.png"), image[..., ::-1])
        cv2.imwrite(str(root / "SegmentationClass" / f"{stem}.png"), mask)
    lists = root / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("\n".join(stems[:n_train]) + "\n")
    (lists / "val.txt").write_text("\n".join(stems[n_train:]) + "\n")
    if classes_txt:
        (root / "classes.txt").write_text("back 0 0 0\nred 200 0 0\ngreen 0 200 0\n")
    return root


TINY_PRESET = {
    "paper": "test",
    "description": "tiny model for engine tests",
    "model": {"arch": "tiny_seg", "num_classes": 3},
    "data": {"format": "voc", "input_size": 32, "classes": CLASSES, "mean": [0.5, 0.5, 0.5],
             "std": [0.5, 0.5, 0.5], "resize": "resize", "workers": 0},
    "train": {"epochs": 2, "batch_size": 2, "optimizer": "adam", "lr": 0.03, "min_lr": 0.001,
              "scheduler": "poly", "sched_step": "iter", "device": "cpu", "seed": 0},
    "augment": [{"op": "hflip", "p": 0.5}],
    "loss": [{"name": "ce", "weight": 1.0}],
}


def write_preset(path: Path, **sections) -> Path:
    """The tiny preset as a YAML file, with sections extended (`train={"epochs": 1}`) or replaced."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_PRESET.items()}
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def voc_root(tmp_path_factory) -> Path:
    return make_voc_tree(tmp_path_factory.mktemp("voc") / "tiny")


@pytest.fixture
def tiny_preset(tmp_path) -> Path:
    return write_preset(tmp_path / "tiny.yaml")


# -- evaluation fixtures -----------------------------------------------------------------------------------
RED, BLUE, GREY = (255, 0, 0), (0, 0, 255), (128, 128, 128)


class ColourNet(nn.Module):
    """Per-pixel classifier by nearest colour prototype (inputs normalised with mean 0, std 1).

    logits_k = −10·‖x − proto_k‖² (+ `ramp`·k·column/width when a position bias is wanted). Records input shapes.
    """

    size_divisor = 1
    fixed_input_size = None

    def __init__(self, protos=(RED, BLUE, GREY), ramp: float = 0.0):
        super().__init__()
        self.register_buffer("protos", torch.tensor(protos, dtype=torch.float32) / 255.0)  # K×3
        self.ramp = ramp
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        d = ((x[:, None] - self.protos[None, :, :, None, None]) ** 2).sum(2)  # B×K×H×W
        logits = -10 * d
        if self.ramp:
            cols = torch.arange(x.shape[-1], dtype=x.dtype) / x.shape[-1]  # W
            logits = logits + self.ramp * torch.arange(len(self.protos), dtype=x.dtype)[None, :, None, None] * cols
        return logits


class ListDataset:
    """`ds[i] -> (image, mask)` over in-memory pairs, like SegDataset without files."""

    def __init__(self, pairs, classes=None):
        self.pairs, self.classes = pairs, classes

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        return self.pairs[i]


def data_cfg(**over):
    cfg = dict(input_size=32, resize="letterbox", mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0], pad_value=128,
               ignore_index=255, classes=["red", "blue", "grey"])
    return cfg | over


def solid(h, w, colour):
    return np.full((h, w, 3), colour, np.uint8)


@pytest.fixture
def colour_net():
    return ColourNet()


@pytest.fixture
def noise_image():
    return np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)
