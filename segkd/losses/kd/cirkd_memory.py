"""CIRKD's memory bank (Yang et al., CVPR 2022): per-class FIFO queues of the teacher's L2-normalised embeddings.

    pixel queue   K × pixel_size × D    (each step, per image and class, up to `pixels_per_update` = 16 of the
                                          sampled pixels go in, the paper's update rate)
    region queue  K × region_size × D   (each step, per image and class, the class's mean embedding)

Memory: K·(pixel_size + region_size)·D floats (the paper's 20,000 and 2,000 per class: 45 MB at K = 4, D = 128,
0.86 GB at K = 19 (Cityscapes), D = 512, on the device of the embeddings). Entries only count once written (a fill
count per class), so an early step contrasts with what the queues hold, never with random vectors. The queues are
buffers of the loss, not of the adapters: they are not in last.pt, and a resumed run starts them empty.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RelationMemory(nn.Module):
    """Per-class FIFO queues of teacher pixel and region embeddings (see the module docstring)."""

    def __init__(self, num_classes: int, dim: int, pixel_size: int = 20000, region_size: int = 2000,
                 pixels_per_update: int = 16):
        super().__init__()
        self.pixels_per_update = pixels_per_update
        for name, size in (("pixel", pixel_size), ("region", region_size)):
            self.register_buffer(f"{name}_queue", torch.zeros(num_classes, size, dim), persistent=False)
            self.register_buffer(f"{name}_ptr", torch.zeros(num_classes, dtype=torch.long), persistent=False)
            self.register_buffer(f"{name}_count", torch.zeros(num_classes, dtype=torch.long), persistent=False)

    @torch.no_grad()
    def push(self, name: str, embeddings: Tensor, classes: Tensor) -> None:
        """Write `embeddings` (M×D) into the queues of their `classes` (M), oldest entries first out."""
        queue, ptr, count = (getattr(self, f"{name}_{part}") for part in ("queue", "ptr", "count"))
        size = queue.shape[1]
        for c in classes.unique().tolist():
            rows = embeddings[classes == c][-size:]  # n×D (a queue never takes more than it holds)
            slots = (int(ptr[c]) + torch.arange(len(rows), device=queue.device)) % size
            queue[c, slots] = rows.to(queue.dtype)
            ptr[c] = (ptr[c] + len(rows)) % size
            count[c] = min(int(count[c]) + len(rows), size)

    def push_pixels(self, embeddings: Tensor, classes: Tensor, images: Tensor) -> None:
        """Per image and class, up to `pixels_per_update` of the (already randomly sampled) pixels M×D."""
        key = images * (int(classes.max()) + 1 if classes.numel() else 1) + classes  # M: one group per (image, class)
        order = torch.argsort(key, stable=True)
        key = key[order]
        first = torch.searchsorted(key, key, side="left")  # index of each group's first pixel
        rank = torch.arange(len(key), device=key.device) - first
        keep = order[rank < self.pixels_per_update]
        self.push("pixel", embeddings[keep], classes[keep])

    def sample(self, name: str, per_class: int) -> Tensor:
        """Up to `per_class` random written entries of every class's queue: n×D (n = 0 when all are empty)."""
        queue, count = getattr(self, f"{name}_queue"), getattr(self, f"{name}_count")
        rows = [queue[c, torch.randperm(int(n), device=queue.device)[:per_class]]
                for c, n in enumerate(count.tolist()) if n > 0]
        return torch.cat(rows) if rows else queue.new_zeros(0, queue.shape[2])
