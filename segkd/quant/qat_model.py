"""A model made quantisation-aware in place: BatchNorm folded, every conv but the logits' one fake-quantised.

What the int8 graph of `segkd export --int8` runs, op set `conv` (`segkd.deploy.quantize.INT8_OP_SETS`):
each quantised Conv2d reads a uint8 per-tensor input, an int8 per-output-channel weight, and writes a uint8
per-tensor output (the QLinearConv that ONNX Runtime fuses from DequantizeLinear → Conv → QuantizeLinear).
Everything else (norms, activations, pooling, resizes, adds) stays fp32 between them, as in post-training
int8. The conv that produces the logits stays fp32 (inputs, weight and output): uint8 logits flip the argmax
of close pixels. Linear layers and functional matmuls stay fp32 (the families' convs carry the arithmetic).

A conv's input that is already another quantised conv's output (unchanged since: same tensor, same version)
is not quantised twice, so the exported graph has one Q/DQ pair there, as ONNX Runtime's quantiser writes it.

`QATSpec` records the surgery (folded pairs, quantised convs, the fp32 logits conv) so that a checkpoint
rebuilds the same module tree before its weights load (`apply_qat`); it lives on the model as `qat_spec`.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from segkd.errors import JobFailed, WeightsError
from segkd.quant.fake_quant import ActivationFakeQuant, WeightFakeQuant, set_fake_quant
from segkd.quant.fold import find_conv_bn_pairs, fold_batchnorm

OP_SET = "conv"
GRID_TAG = "_segkd_on_grid"  # tensor attribute: the version at which a quantiser wrote it


@dataclass
class QATSpec:
    folded: list[list[str]] = field(default_factory=list)  # [conv path, BatchNorm path]
    quantized: list[str] = field(default_factory=list)  # conv paths in int8
    logits_op: str | None = None  # the conv kept fp32
    op_set: str = OP_SET
    reduce_range: bool = True  # 7-bit weights (see `WeightFakeQuant`)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "QATSpec":
        try:
            return cls(folded=[list(p) for p in raw["folded"]], quantized=list(raw["quantized"]),
                       logits_op=raw.get("logits_op"), op_set=raw.get("op_set", OP_SET),
                       reduce_range=bool(raw.get("reduce_range", True)))
        except (KeyError, TypeError) as e:
            raise WeightsError(f"checkpoint 'quant' metadata is malformed ({e})") from None

    def describe(self) -> str:
        bits = "7-bit" if self.reduce_range else "8-bit"
        return (f"BatchNorm folded into {len(self.folded)} convs; {len(self.quantized)} convs in int8 (uint8 "
                f"activations per tensor, {bits} weights per channel); logits conv '{self.logits_op}' fp32")


def is_qat(model: nn.Module) -> bool:
    return getattr(model, "qat_spec", None) is not None


def plan_qat(model: nn.Module, x: Tensor, reduce_range: bool = True) -> QATSpec:
    """Which BatchNorms fold and which convs quantise, read from one forward of `x` (B×3×H×W)."""
    convs, logits = _conv_outputs(model, x)
    if not convs:
        raise JobFailed(f"{type(model).__name__}: no Conv2d to quantise")
    logits_op = next((name for name, out in convs if out is logits), convs[-1][0])  # else: the last conv run
    ordered = list(dict.fromkeys(name for name, _ in convs))
    return QATSpec(folded=[list(p) for p in find_conv_bn_pairs(model, x)],
                   quantized=[n for n in ordered if n != logits_op], logits_op=logits_op, reduce_range=reduce_range)


def _conv_outputs(model: nn.Module, x: Tensor) -> tuple[list[tuple[str, Tensor]], Tensor | None]:
    """(conv path, output) in execution order, and the logits at the head's resolution (a segkd model's
    `logits` tap; the output of a bare module)."""
    convs: list[tuple[str, Tensor]] = []
    names = {m: n for n, m in model.named_modules()}
    hooks = [m.register_forward_hook(lambda mod, a, out: convs.append((names[mod], out)))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()
            logits = model.head_taps(x)["logits"] if hasattr(model, "head_taps") else model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return convs, logits


def apply_qat(model: nn.Module, spec: QATSpec) -> nn.Module:
    """Fold and attach the quantisers in place (the quantisers start at scale 1: calibrate before training)."""
    fold_batchnorm(model, [tuple(p) for p in spec.folded])
    for path in spec.quantized:
        conv = model.get_submodule(path)
        conv.input_quant = ActivationFakeQuant()
        conv.output_quant = ActivationFakeQuant()
        parametrize.register_parametrization(conv, "weight", WeightFakeQuant(conv.out_channels, spec.reduce_range))
        conv.register_forward_pre_hook(_quantize_input)
        conv.register_forward_hook(_quantize_output)
    model.qat_spec = spec
    return model


def prepare_qat(model: nn.Module, x: Tensor, reduce_range: bool = True, atol: float = 1e-3) -> QATSpec:
    """Plan, fold (checked: the folded model must compute what the original did on `x`) and attach quantisers."""
    spec = plan_qat(model, x, reduce_range)
    was_training = model.training
    with torch.no_grad():
        before = model.eval()(x)
        fold_batchnorm(model, [tuple(p) for p in spec.folded])
        after = model(x)
    model.train(was_training)
    scale = max(1.0, float(before.abs().max()))
    if not torch.allclose(before, after, atol=atol * scale, rtol=0):
        raise JobFailed(f"{type(model).__name__}: folding BatchNorm into its conv changed the outputs (a conv "
                        "output read by more than its BatchNorm?)")
    apply_qat(model, QATSpec([], spec.quantized, spec.logits_op, spec.op_set, spec.reduce_range))
    model.qat_spec = spec
    return spec


@contextlib.contextmanager
def calibrating(model: nn.Module) -> Iterator[None]:
    """Min/max calibration of every quantiser over the forwards run inside (no gradients, eval mode)."""
    was_training = model.training
    set_fake_quant(model, observing=True)
    try:
        with torch.no_grad():
            model.eval()
            yield
    finally:
        set_fake_quant(model, observing=False)
        model.train(was_training)


def _on_grid(x: Tensor) -> bool:
    return getattr(x, GRID_TAG, None) == x._version


def _quantize_input(conv: nn.Module, args: tuple) -> tuple | None:
    x = args[0]
    if not conv.input_quant.enabled or _on_grid(x):
        return None
    return (conv.input_quant(x), *args[1:])


def _quantize_output(conv: nn.Module, args: tuple, out: Tensor) -> Tensor | None:
    if not conv.output_quant.enabled:
        return None
    y = conv.output_quant(out)
    setattr(y, GRID_TAG, y._version)
    return y
