"""Deploy fixtures: two tiny registered models (any size / fixed 32×32), their checkpoints, images, a video.

Also imported by path from tests/commands/test_{predict,export,bench}.py, so registration is guarded.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from segkd.config import config_to_dict, load_config
from segkd.models import SegmentationModel, checkpoint_payload, create_model, list_models, register_model

CLASSES = ["background", "spot", "scar"]
PALETTE = [[0, 0, 0], [200, 30, 30], [30, 200, 30]]


class TinySeg(SegmentationModel):
    """conv-BN-ReLU ×2 (stride 4) -> 1×1 head; logits at 1/4, upsampled by the base class."""

    size_divisor = 4

    def __init__(self, num_classes: int = 3, width: int = 8):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        )
        self.head = nn.Conv2d(2 * width, num_classes, 1)


class TinySegFixed(TinySeg):
    fixed_input_size = (32, 32)


if "deploy_tiny" not in list_models():

    @register_model
    def deploy_tiny(num_classes: int = 3, **kwargs) -> TinySeg:
        return TinySeg(num_classes, **kwargs)

    @register_model
    def deploy_tiny_fixed(num_classes: int = 3, **kwargs) -> TinySegFixed:
        return TinySegFixed(num_classes, **kwargs)


def tiny_config(arch: str = "deploy_tiny", size: int = 32, **data) -> dict:
    cfg = config_to_dict(load_config("fastsegformer-p", [f"model.arch={arch}", "model.num_classes=3",
                                                         "model.options={}", f"data.input_size={size}"]))
    cfg["data"].update(classes=CLASSES, palette=PALETTE, **data)
    cfg["name"] = arch
    cfg["distill"] = None
    return cfg


def decisive_model(arch: str, seed: int = 0) -> nn.Module:
    """A tiny model with randomised BN statistics and a scaled-up head: logits far apart, like a trained net."""
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    model.head.weight.data *= 4
    return model.eval()


def save_checkpoint(path: Path, arch: str = "deploy_tiny", size: int = 32, seed: int = 0, **data) -> Path:
    model = decisive_model(arch, seed)
    torch.save(checkpoint_payload(model, tiny_config(arch, size, **data)), path)
    return path


@pytest.fixture
def tiny_ckpt(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "tiny.pt")


@pytest.fixture
def tiny_fixed_ckpt(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "tiny_fixed.pt", arch="deploy_tiny_fixed")


def write_image(path: Path, h: int = 40, w: int = 56, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = rng.integers(40, 200, 3)
    img[h // 4 : h // 2, w // 3 : w // 2] = rng.integers(0, 255, 3)
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture
def image_dir(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i, (h, w) in enumerate([(40, 56), (64, 48), (33, 33)]):
        write_image(folder / f"img{i}.png", h, w, seed=i)
    return folder


def write_video(path: Path, frames: int = 5, h: int = 48, w: int = 64) -> Path:
    """A tiny mp4 (fourcc mp4v works with opencv-python-headless here)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for i in range(frames):
        frame = np.full((h, w, 3), 60 + 20 * i, np.uint8)
        frame[10:30, 10 + i : 30 + i] = (0, 0, 255)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    return write_dataset(tmp_path / "data")


def write_dataset(root: Path) -> Path:
    """A VOC-layout dataset: 6 images with masks, train/val lists of 3 each."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    stems = [f"s{i}" for i in range(6)]
    for i, stem in enumerate(stems):
        write_image(root / "JPEGImages" / f"{stem}.png", 36 + 4 * i, 48, seed=i)
        mask = np.zeros((36 + 4 * i, 48), np.uint8)
        mask[(36 + 4 * i) // 4 : (36 + 4 * i) // 2, 16:24] = 1 + i % 2
        cv2.imwrite(str(root / "SegmentationClass" / f"{stem}.png"), mask)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(stems[:3]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(stems[3:]) + "\n")
    return root
