"""Lovász-softmax loss (Berman et al., CVPR 2018): a convex surrogate of 1 − IoU per class.

For each class c, over the non-ignored pixels of the whole batch:
    e_i = |t_ic − p_ic|, sorted descending (π);  g = Δ of the Jaccard loss along π:
        J_k = 1 − (G − Σ_{j≤k} t_πj) / (G + Σ_{j≤k} (1 − t_πj)),  G = Σ t_c
        g_1 = J_1,  g_k = J_k − J_{k−1}
    L_c = Σ_k e_πk · g_k
loss = mean of L_c over the classes present in the label (PaddleSeg's `classes='present'`), 0 when there are
none. PP-MobileSeg trains with 0.8·CE + 0.2·Lovász on the upsampled logits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from segkd.losses.registry import register_loss
from segkd.losses.target import probs_and_one_hot


def lovasz_grad(fg_sorted: Tensor) -> Tensor:
    """N foreground indicators in error order -> N gradient weights of the Jaccard loss (its Lovász extension)."""
    gts = fg_sorted.sum()
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1 - fg_sorted).cumsum(0)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


@register_loss("lovasz")
class LovaszSoftmaxLoss(nn.Module):
    def __init__(self, ignore_index: int = 255):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        probs, one_hot, valid = probs_and_one_hot(logits, target, self.ignore_index)  # B×K×H×W ×2, B×1×H×W
        keep = valid.flatten().bool()
        k = probs.shape[1]
        probs = probs.permute(0, 2, 3, 1).reshape(-1, k)[keep]  # N×K over valid pixels
        one_hot = one_hot.permute(0, 2, 3, 1).reshape(-1, k)[keep]  # N×K
        losses = []
        for c in range(k):
            fg = one_hot[:, c]
            if fg.sum() == 0:  # 'present' classes only
                continue
            errors, order = (fg - probs[:, c]).abs().sort(descending=True)
            losses.append(torch.dot(errors, lovasz_grad(fg[order])))
        if not losses:
            return probs.sum() * 0.0
        return torch.stack(losses).mean()
