"""The student and its KD adapters as ONE trainable module, so DistributedDataParallel wraps it once.

DDP synchronises the gradients of the module it wraps, and of nothing else: adapters kept beside the student
would train apart on every rank. `AdaptedStudent.forward` therefore returns what the losses need, and only that:

    out = AdaptedStudent(student, adapters, {"nfd": ["stage1", "fusion"], "pkl": ["logits"]})(x)
    out.logits                       # B×K×H×W, for the hard-label losses
    out.adapted                      # {term: [adapter_i(taps[student tap of pair i]) ...]}, for the KD terms
                                     # (an identity adapter passes a tap through: pkl's student logits)

Returning the other taps too would break DDP: it takes every parameter an output depends on as one the loss
uses, and then waits forever for the gradients of the layers behind taps no loss reads (the 3rd step fails).
The teacher is not part of it (frozen, replicated on every rank, never wrapped).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn


class StudentOutputs(NamedTuple):
    logits: Tensor  # B×K×H×W
    adapted: dict[str, list[Tensor]]  # term name -> one adapted student tap per (student, teacher) pair


class AdaptedStudent(nn.Module):
    """`student` + `adapters` (term -> ModuleList, one adapter per pair); `pairs[term]` = the student taps."""

    def __init__(self, student: nn.Module, adapters: nn.ModuleDict, pairs: dict[str, list[str]]):
        super().__init__()
        self.student, self.adapters, self.pairs = student, adapters, pairs

    def forward(self, x: Tensor) -> StudentOutputs:
        logits, taps = self.student.forward_taps(x)
        adapted = {term: [adapter(taps[tap]) for adapter, tap in zip(self.adapters[term], names)]
                   for term, names in self.pairs.items()}
        return StudentOutputs(logits, adapted)
