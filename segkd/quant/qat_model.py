"""A model made quantisation-aware in place: BatchNorm folded, every conv but the logits' one fake-quantised.

What the int8 graph of `segkd export --int8` runs, op set `conv` (`segkd.deploy.quantize.INT8_OP_SETS`):
each quantised Conv2d reads a uint8 per-tensor input, an int8 per-output-channel weight, and writes a uint8
per-tensor output (the QLinearConv that ONNX Runtime fuses from DequantizeLinear → Conv → QuantizeLinear).
Everything else (norms, activations, pooling, resizes, adds) stays fp32 between them, as in post-training
int8. The conv that produces the logits stays fp32 (inputs, weight and output): uint8 logits flip the argmax
of close pixels. Linear layers and functional matmuls stay fp32 (the families' convs carry the arithmetic).

A conv whose input is another quantised conv's output, unchanged (no op, not even an in-place one, between
them: found once in `prepare_qat` and recorded in `QATSpec.reads_int8` with the conv it reads), has no input
quantiser of its own: the exported graph has one Q/DQ pair there, as ONNX Runtime's quantiser writes it.

Each quantised conv's bias is put on the int32 grid ONNX Runtime adds it on (input scale × weight scale,
`bias_rounding`), so that the int8 graph computes the fake-quantised forward, not a near copy of it.

`QATSpec` records the surgery (folded pairs, quantised convs, the fp32 logits conv) so that a checkpoint
rebuilds the same module tree before its weights load (`apply_qat`); it lives on the model as `qat_spec`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from dataclasses import asdict, dataclass, field
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from segkd.errors import JobFailed, WeightsError
from segkd.quant.fake_quant import ActivationFakeQuant, WeightFakeQuant, bias_rounding, set_fake_quant
from segkd.quant.fold import find_fold_pairs, fold_into_convs, forward_with_hooks

OP_SET = "conv"


@dataclass
class QATSpec:
    folded: list[list[str]] = field(default_factory=list)  # [conv path, BatchNorm or layer-scale path], in order
    quantized: list[str] = field(default_factory=list)  # conv paths in int8
    logits_op: str | None = None  # the conv kept fp32
    op_set: str = OP_SET
    reduce_range: bool = True  # 7-bit weights (see `WeightFakeQuant`)
    reads_int8: list[list[str]] = field(default_factory=list)  # [conv, the quantised conv whose output it reads]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "QATSpec":
        try:
            return cls(folded=[list(p) for p in raw["folded"]], quantized=list(raw["quantized"]),
                       logits_op=raw.get("logits_op"), op_set=raw.get("op_set", OP_SET),
                       reduce_range=bool(raw.get("reduce_range", True)),
                       reads_int8=[_pair(p) for p in raw.get("reads_int8", [])])
        except (KeyError, TypeError, ValueError) as e:
            raise WeightsError(f"checkpoint 'quant' metadata is malformed ({e})") from None

    def describe(self) -> str:
        bits = "7-bit" if self.reduce_range else "8-bit"
        return (f"BatchNorm and layer scales folded into convs ({len(self.folded)}); {len(self.quantized)} convs in "
                f"int8 (uint8 activations per tensor, {bits} weights per channel); logits conv '{self.logits_op}' fp32")


def _pair(entry) -> list[str]:
    if isinstance(entry, str) or len(entry) != 2:
        raise ValueError(f"reads_int8 entry {entry!r} is not [conv, producing conv]" + (
            "; a QAT checkpoint written before segkd put biases on the int32 grid: run QAT again"
            if isinstance(entry, str) else ""))
    return [str(entry[0]), str(entry[1])]


def is_qat(model: nn.Module) -> bool:
    return getattr(model, "qat_spec", None) is not None


def plan_qat(model: nn.Module, x: Tensor, reduce_range: bool = True) -> QATSpec:
    """Which BatchNorms fold and which convs quantise, read from one forward of `x` (B×3×H×W)."""
    convs, logits = _conv_outputs(model, x)
    if not convs:
        raise JobFailed(f"{type(model).__name__}: no Conv2d to quantise")
    logits_op = next((name for name, out in convs if out is logits), convs[-1][0])  # else: the last conv run
    ordered = list(dict.fromkeys(name for name, _ in convs))
    return QATSpec(folded=[list(p) for p in find_fold_pairs(model, x)],
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
    fold_into_convs(model, [tuple(p) for p in spec.folded])
    reads = dict(spec.reads_int8)  # conv -> the quantised conv whose output it reads
    convs = {path: model.get_submodule(path) for path in spec.quantized}
    for path, conv in convs.items():
        if path not in reads:
            conv.input_quant = ActivationFakeQuant()
            conv.register_forward_pre_hook(_quantize_input)
        conv.output_quant = ActivationFakeQuant()
        parametrize.register_parametrization(conv, "weight", WeightFakeQuant(conv.out_channels, spec.reduce_range))
    for path, conv in convs.items():
        if path in reads and reads[path] not in convs:
            raise WeightsError(f"checkpoint 'quant' metadata: '{path}' reads '{reads[path]}', not a quantised conv")
        source = convs[reads[path]].output_quant if path in reads else conv.input_quant
        conv.register_forward_hook(functools.partial(_quantize_output, input_quant=source))
    model.qat_spec = spec
    return model


def prepare_qat(model: nn.Module, x: Tensor, reduce_range: bool = True, atol: float = 1e-3) -> QATSpec:
    """Plan, fold (checked: the folded model must compute what the original did on `x`), find the convs that
    read another quantised conv's output unchanged, and attach the quantisers."""
    spec = plan_qat(model, x, reduce_range)
    was_training = model.training
    with torch.no_grad():
        before = model.eval()(x)
        fold_into_convs(model, [tuple(p) for p in spec.folded])
        after = model(x)
    model.train(was_training)
    scale = max(1.0, float(before.abs().max()))
    if not torch.allclose(before, after, atol=atol * scale, rtol=0):
        raise JobFailed(f"{type(model).__name__}: folding BatchNorm or a layer scale into its conv changed the "
                        "outputs (a conv output read by more than the module folded into it?)")
    spec.reads_int8 = _reading_int8(model, x, spec.quantized)
    apply_qat(model, dataclasses.replace(spec, folded=[]))
    model.qat_spec = spec
    return spec


def _reading_int8(model: nn.Module, x: Tensor, quantized: list[str]) -> list[list[str]]:
    """[conv, producer] for each quantised conv whose input is a quantised conv's output, unchanged since (same
    tensor, same version: an in-place activation in between counts as a change). One forward of the folded
    model, without gradients (inference tensors have no version counter)."""
    written: dict[int, tuple[Tensor, int, str]] = {}  # id(output) -> (output, version when written, conv)
    found: dict[str, str] = {}
    paths = set(quantized)
    names = {m: n for n, m in model.named_modules() if n in paths}

    def before(conv: nn.Module, args: tuple) -> None:
        entry = written.get(id(args[0]))
        if entry is not None and entry[0] is args[0] and args[0]._version == entry[1]:
            found.setdefault(names[conv], entry[2])

    def after(conv: nn.Module, args: tuple, out: Tensor) -> None:
        written[id(out)] = (out, out._version, names[conv])

    hooks = [h for m in names for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
    forward_with_hooks(model, x, hooks)
    return [[conv, producer] for conv, producer in found.items()]


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


def _quantize_input(conv: nn.Module, args: tuple) -> tuple | None:
    return (conv.input_quant(args[0]), *args[1:]) if conv.input_quant.enabled else None


def _quantize_output(conv: nn.Module, args: tuple, out: Tensor, *, input_quant: ActivationFakeQuant) -> Tensor | None:
    """The conv's output on its uint8 grid, its bias first moved onto the int32 one (not while exporting: the
    export rounds the bias initializer itself, the same way)."""
    if not conv.output_quant.enabled:
        return None
    if conv.bias is not None and input_quant.enabled and not torch.onnx.is_in_onnx_export():
        weight_quant = conv.parametrizations.weight[0]
        out = out + bias_rounding(conv.bias, input_quant.scale, weight_quant.scale).view(1, -1, 1, 1)
    return conv.output_quant(out)
