"""CIRKD: cross-image relational knowledge distillation (Yang et al., CVPR 2022), on a feature tap.

The student's map goes through a learned 1×1 conv to the teacher's width when the widths differ (the paper's
projection head), the teacher's is resized to the student's h×w, and both are L2-normalised per pixel:
f = F / ‖F‖₂ over channels. Each image contributes P pixels (`pixels`, default 256, drawn at random per image
and step; all of them when h·w ≤ P): the full B·h·w × B·h·w relation matrix grows with the square of the
batch's pixels (4.3 GB in float32 for 8 maps of 64×64), the sampled one is B²·P² (4 M floats at B = 8).

Pixel-to-pixel (mini-batch), for every ordered pair of images (i, j) of the batch:
    S_ij = f_i · f_jᵀ  (P×P: each sampled pixel of image i against each of image j; B×B×P×P in all)
    L_pixel = 1/(B²·P) Σ_{i,j} Σ_a KL(softmax(S^t_ij[a, :] / τ) ‖ softmax(S^s_ij[a, :] / τ))
Pixel-to-region: the class-wise region embeddings r = normalise(mean of the teacher's f over the pixels of one
class in one image) of the batch (classes from the labels, `regions: labels`, or from the teacher's argmax,
`regions: teacher`; ignore_index pixels belong to none), and each sampled valid pixel a as an anchor:
    L_region = 1/M Σ_a KL(softmax(f^t_a · Rᵀ / τ) ‖ softmax(f^s_a · Rᵀ / τ))      (R: all regions, M anchors)
    L = pixel_weight · L_pixel + region_weight · L_region       (+ memory_pixel_weight · L_memory, below)

`memory: true` is the paper's memory-bank form (`cirkd_memory.RelationMemory`, sizes there): the regions R come
from a per-class queue of past teacher region embeddings (`region_contrast` per class sampled each step, paper
1024, from `region_memory` = 2000 per class), and a third term contrasts the anchors with teacher pixel
embeddings from a pixel queue (`pixel_contrast` = 4096 per class from `pixel_memory` = 20,000 per class):
    L_memory = 1/M Σ_a KL(softmax(f^t_a · Qᵀ / τ) ‖ softmax(f^s_a · Qᵀ / τ)).
It needs `num_classes` (the Distiller passes model.num_classes). Weights and τ follow the paper's code: τ = 0.1,
pixel 1.0, memory terms 0.1 each (the mini-batch region term, which the paper's code does not have, 0.1 too);
the paper's KD temperature on top of τ is 1 and left out. Not implemented: the channel-relation variant of the
later CIRKD code, and gathering embeddings across DDP ranks (each rank relates its own batch).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from segkd.errors import ConfigError
from segkd.losses.kd.base import KDLoss
from segkd.losses.kd.cirkd_memory import RelationMemory
from segkd.losses.kd.logit_kl import softened_kl
from segkd.losses.registry import register_loss


def sample_pixels(x: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """B×D×h×w -> (B×P×D pixels, B×P indices into h·w); P = min(count, h·w), random unless P = h·w."""
    b, d = x.shape[:2]
    flat = x.flatten(2).transpose(1, 2)  # B×hw×D
    hw = flat.shape[1]
    if count >= hw:
        index = torch.arange(hw, device=x.device).expand(b, hw)
    else:
        index = torch.rand(b, hw, device=x.device).argsort(1)[:, :count]  # B×P
    return flat.gather(1, index[..., None].expand(-1, -1, d)), index


def pixel_relations(pixels: Tensor) -> Tensor:
    """B×P×D -> B×B×P×P: S[i, j] = pixels[i] · pixels[j]ᵀ (cross-image pixel similarities)."""
    return torch.einsum("ipd,jqd->ijpq", pixels, pixels)


def region_embeddings(features: Tensor, labels: Tensor, ignore_index: int, num_classes: int) -> tuple[Tensor, Tensor]:
    """B×D×h×w features, B×h×w labels -> (R×D L2-normalised class means per image, R class ids)."""
    b, d = features.shape[:2]
    valid = labels != ignore_index  # B×h×w
    key = (torch.arange(b, device=labels.device)[:, None, None] * num_classes + labels)[valid]  # V
    feats = features.permute(0, 2, 3, 1)[valid]  # V×D
    sums = feats.new_zeros(b * num_classes, d).index_add_(0, key, feats)
    counts = torch.bincount(key, minlength=b * num_classes)
    present = counts > 0
    means = sums[present] / counts[present, None]
    return F.normalize(means, dim=1), torch.arange(b * num_classes, device=labels.device)[present] % num_classes


def relation_kl(student: Tensor, teacher: Tensor, contrast: Tensor, temperature: float) -> Tensor:
    """Mean over the M anchors of KL(softmax(t·Cᵀ/τ) ‖ softmax(s·Cᵀ/τ)); s, t M×D, contrast C N×D."""
    if len(contrast) == 0 or len(student) == 0:
        return student.sum() * 0.0
    return softened_kl(student @ contrast.T, teacher @ contrast.T, temperature, dim=1).mean()


@register_loss("cirkd")
class CIRKDLoss(KDLoss):
    """Cross-image pixel-to-pixel + pixel-to-region relation KD on sampled pixels (see the module docstring)."""

    adapter = "conv1x1_if_needed"

    def __init__(self, temperature: float = 0.1, pixel_weight: float = 1.0, region_weight: float = 0.1,
                 pixels: int = 256, regions: Literal["labels", "teacher"] = "labels", memory: bool = False,
                 memory_pixel_weight: float = 0.1, pixel_memory: int = 20000, region_memory: int = 2000,
                 pixel_contrast: int = 4096, region_contrast: int = 1024, ignore_index: int = 255,
                 num_classes: int | None = None):
        super().__init__()
        if regions not in ("labels", "teacher"):
            raise ConfigError(f"cirkd: regions='{regions}' is not 'labels' or 'teacher'")
        if memory and not num_classes:
            raise ConfigError("cirkd: memory=true needs num_classes (one queue per class)")
        if not isinstance(pixels, int) or isinstance(pixels, bool) or pixels < 1:
            raise ConfigError(f"cirkd: pixels={pixels!r} is not a whole number >= 1")
        self.temperature, self.pixels = temperature, pixels
        self.pixel_weight, self.region_weight = pixel_weight, region_weight
        self.memory, self.memory_pixel_weight = memory, memory_pixel_weight
        self.sizes = dict(pixel_size=pixel_memory, region_size=region_memory)
        self.pixel_contrast, self.region_contrast = pixel_contrast, region_contrast
        self.ignore_index, self.num_classes = ignore_index, num_classes
        if memory or region_weight:
            self.label_source = "masks" if regions == "labels" else "teacher"
        self.bank: RelationMemory | None = None  # built at the first step, when the embedding width is known

    def pair_loss(self, student: Tensor, teacher: Tensor, labels: Tensor | None = None) -> Tensor:  # B×D×h×w
        s, t = F.normalize(student, dim=1), F.normalize(teacher, dim=1)
        s_pix, index = sample_pixels(s, self.pixels)  # B×P×D
        t_pix = t.flatten(2).transpose(1, 2).gather(1, index[..., None].expand(-1, -1, t.shape[1]))
        pixel = softened_kl(pixel_relations(s_pix), pixel_relations(t_pix), self.temperature, dim=3).mean()
        loss = self.pixel_weight * pixel
        if labels is None:
            return loss
        classes = labels.flatten(1).gather(1, index)  # B×P
        valid = classes != self.ignore_index
        s_anchor, t_anchor = s_pix[valid], t_pix[valid]  # M×D
        num_classes = self.num_classes or int(labels.masked_fill(labels == self.ignore_index, 0).max()) + 1
        regions, region_classes = region_embeddings(t, labels, self.ignore_index, num_classes)
        if self.memory:
            bank = self.memory_bank(t.shape[1], t.device)
            bank.push("region", regions, region_classes)
            images = torch.arange(len(classes), device=classes.device)[:, None].expand_as(classes)[valid]
            bank.push_pixels(t_anchor, classes[valid], images)
            regions = bank.sample("region", self.region_contrast)
            queued = bank.sample("pixel", self.pixel_contrast)
            loss = loss + self.memory_pixel_weight * relation_kl(s_anchor, t_anchor, queued, self.temperature)
        return loss + self.region_weight * relation_kl(s_anchor, t_anchor, regions, self.temperature)

    def memory_bank(self, dim: int, device: torch.device) -> RelationMemory:
        """The queues, built on the first call (their width is the teacher tap's)."""
        if self.bank is None:
            self.bank = RelationMemory(self.num_classes, dim, **self.sizes).to(device)
        return self.bank
