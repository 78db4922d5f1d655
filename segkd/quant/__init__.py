"""Quantisation-aware training: fake quantisation that matches the int8 graph ONNX Runtime runs.

`segkd.quant` depends on torch only (models rebuild QAT checkpoints through it; the engine's QAT callback and the
int8 export drive it).
"""

from segkd.quant.fake_quant import (ActivationFakeQuant, WeightFakeQuant, bake_weights, fake_quantizers,
                                    set_fake_quant)
from segkd.quant.fold import find_fold_pairs, fold_into_convs
from segkd.quant.qat_model import QATSpec, apply_qat, calibrating, is_qat, plan_qat, prepare_qat

__all__ = [
    "ActivationFakeQuant", "QATSpec", "WeightFakeQuant", "apply_qat", "bake_weights", "calibrating", "fake_quantizers",
    "find_fold_pairs", "fold_into_convs", "is_qat", "plan_qat", "prepare_qat", "set_fake_quant",
]
