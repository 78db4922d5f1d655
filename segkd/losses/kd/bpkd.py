"""BPKD: boundary-privileged knowledge distillation (Liu et al., WACV 2024, arXiv 2306.08075), on logits.

Each image is split by its ground-truth labels into an edge region and a body region, and the two are distilled
apart, each with its own weight. The labels are nearest-resized to the student logits' size h×w first; there

    edge(p) = p is valid and a valid pixel of another class lies within `width` pixels (a (2w+1)×(2w+1) window:
              max-pool of the label map ≠ its min-pool; ignore_index pixels count as no class)
    body(p) = p is valid and not an edge pixel                     (ignore_index pixels are in neither)

    L_edge = τ² / |E| · Σ_{p∈E} KL(q_t(p) ‖ q_s(p)),   q = softmax(z / τ) over the K classes at pixel p
                (the paper's edge loss: tell ambiguous classes apart pixel by pixel on the edges)
    L_body = τ² / (N·K) · Σ_{n,k} KL(φ_body(T_{n,k}) ‖ φ_body(S_{n,k})),   φ_body = softmax of z/τ over the
                body pixels of sample n only (`body: channel`, the default: the paper's body loss "utilises shape
                constraints", read here as channel-wise distillation, each class map's spatial distribution
                over the body; N counts the samples with body pixels)
           or   τ² / |B| · Σ_{p∈B} KL(q_t(p) ‖ q_s(p))     (`body: pixel`: pixel KL normalised by the body area)
    L      = edge_weight · L_edge + body_weight · L_body

An empty region contributes 0. Student and teacher need the same number of classes; the teacher is resized to
the student's size. The paper's exact temperatures and weights are not public (no training code released);
the defaults τ = 1, both weights 1, width 1 are segkd's.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from segkd.errors import ConfigError
from segkd.losses.kd.base import KDLoss
from segkd.losses.kd.logit_kl import softened_kl
from segkd.losses.registry import register_loss


def edge_mask(labels: Tensor, width: int = 1, ignore_index: int = 255) -> Tensor:
    """B×H×W labels -> B×H×W bool: valid pixels with a valid pixel of another class within `width` (Chebyshev)."""
    valid = labels != ignore_index
    x = labels.float()[:, None]  # B×1×H×W
    k, none = 2 * width + 1, float("-inf")  # ignored pixels (and the padding) never win a max-pool
    high = F.max_pool2d(torch.where(valid[:, None], x, none), k, stride=1, padding=width)  # window max
    low = -F.max_pool2d(torch.where(valid[:, None], -x, none), k, stride=1, padding=width)  # window min
    return valid & (high != low)[:, 0]


def body_channel_kl(student: Tensor, teacher: Tensor, body: Tensor, temperature: float) -> Tensor:
    """Σ_{n,k} KL over the body pixels of the spatial softmaxes, / (N·K), N = samples with body pixels."""
    keep = body.flatten(1).any(1)  # N
    if not bool(keep.any()):
        return student.sum() * 0.0
    s, t, m = student[keep].flatten(2), teacher[keep].flatten(2), body[keep].flatten(1)[:, None]  # n×K×HW, n×1×HW
    log_s = torch.where(m, F.log_softmax((s / temperature).masked_fill(~m, float("-inf")), dim=2), 0.0)
    log_t = torch.where(m, F.log_softmax((t / temperature).masked_fill(~m, float("-inf")), dim=2), 0.0)
    kl = (log_t.exp() * (log_t - log_s) * m).sum(2)  # n×K
    return kl.sum() / (kl.shape[0] * kl.shape[1])


def masked_pixel_kl(student: Tensor, teacher: Tensor, region: Tensor, temperature: float) -> Tensor:
    """Mean over the pixels of `region` (B×H×W bool) of Σ_c KL(q_t ‖ q_s); 0 when the region is empty."""
    kl = softened_kl(student, teacher, temperature, dim=1)  # B×H×W
    return (kl * region).sum() / region.sum().clamp(min=1)


@register_loss("bpkd")
class BPKDLoss(KDLoss):
    """edge_weight·τ²·KL on edge pixels + body_weight·(channel-wise or pixel KL on the body) (module docstring)."""

    label_source = "masks"

    def __init__(self, width: int = 1, edge_weight: float = 1.0, body_weight: float = 1.0, temperature: float = 1.0,
                 body: Literal["channel", "pixel"] = "channel", ignore_index: int = 255):
        super().__init__()
        if body not in ("channel", "pixel"):
            raise ConfigError(f"bpkd: body='{body}' is not 'channel' or 'pixel'")
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ConfigError(f"bpkd: width={width!r} is not a whole number >= 1")
        self.width, self.edge_weight, self.body_weight = width, edge_weight, body_weight
        self.temperature, self.body, self.ignore_index = temperature, body, ignore_index

    def regions(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(edge, body) B×H×W bool masks of `labels`."""
        edge = edge_mask(labels, self.width, self.ignore_index)
        return edge, (labels != self.ignore_index) & ~edge

    def pair_loss(self, student: Tensor, teacher: Tensor, labels: Tensor | None = None) -> Tensor:  # B×K×h×w
        edge, body = self.regions(labels)  # B×h×w each
        tau = self.temperature
        edge_loss = masked_pixel_kl(student, teacher, edge, tau)
        if self.body == "channel":
            body_loss = body_channel_kl(student, teacher, body, tau)
        else:
            body_loss = masked_pixel_kl(student, teacher, body, tau)
        return tau**2 * (self.edge_weight * edge_loss + self.body_weight * body_loss)
