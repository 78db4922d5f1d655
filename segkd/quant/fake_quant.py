"""Fake quantisers that ONNX Runtime's int8 kernels reproduce: U8 activations per tensor, S8 weights per channel.

    ActivationFakeQuant  uint8 [0, 255], one scale and zero point per tensor (asymmetric)
    WeightFakeQuant      int8, one scale per output channel, zero point 0 (symmetric); 7-bit [-64, 63] by default
                         (`reduce_range`, see the class), [-128, 127] without
    bias_rounding        a conv bias on ONNX Runtime's int32 grid (input scale × weight scale): what it adds

Both are calibrated, then learned:
- calibration (`observing=True`, a few batches without gradients): the range is the running min/max of what
  passes, widened to hold 0, exactly as ONNX Runtime's MinMax calibrator does (scale = (max - min) / 255,
  zero point = round(-min / scale)); weights: scale = max |w| / ((q_max - q_min) / 2) per output channel, as
  its symmetric weight quantiser does.
- training: LSQ+ (Esser et al. 2020; Bhalgat et al. 2020): the scale (and an activation's zero point) are
  parameters with straight-through gradients, scaled by 1/sqrt(N·Q_max) so that they learn at the pace of the
  weights. Calibration starts QAT where post-training int8 stands; learning then trades clipping against
  rounding error under the training (and KD) losses.
The forward is `fake_quantize`: ONNX's QuantizeLinear arithmetic, x / scale rounded half to even. torch's fused
fake-quantisation kernels multiply by 1/scale instead, and a tie (x / scale exactly k + 0.5) then rounds down:
frequent, as a calibrated scale is often a simple ratio of the previous conv's output scale (measured: 216 of
16 384 elements of one activation in a 4-conv test model, each moving a downstream output by a step).
During `torch.onnx.export` (of a model whose weights went through `bake_weights`, so that they sit on their
grid: ONNX's QuantizeLinear only clamps to the type's range) each quantiser traces as one QuantizeLinear /
DequantizeLinear pair with its current scale and zero point (`fake_quantize_per_*_affine` symbolics, opset
>= 13): the QDQ graph computes what the PyTorch forward does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

U8 = (0, 255)
S8 = (-128, 127)
S7 = (-64, 63)  # `reduce_range`: 7-bit weights, stored as int8
MIN_SCALE = 1e-8  # a range that saw only zeros
INT32_BIAS_MAX = 2**30  # the largest |bias / (input scale × weight scale)| kept: int32 with a 2× margin


def fake_quantize(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int, grad_factor: float) -> Tensor:
    """DequantizeLinear(QuantizeLinear(x)) as ONNX specifies it: (clamp(round(x / scale) + zp) - zp) · scale, zp the
    rounded `zero_point`, rounding half to even. `scale` and `zero_point` broadcast against x (per tensor or per
    channel). Gradients: straight through the rounding (x: 1 inside the range, 0 outside; scale and zero point:
    LSQ+'s), those of scale and zero point multiplied by `grad_factor`."""
    scale, zero_point = _grad_scaled(scale, grad_factor), _grad_scaled(zero_point, grad_factor)
    zero_point = _round_ste(zero_point).clamp(qmin, qmax)
    q = (_round_ste(x / scale) + zero_point).clamp(qmin, qmax)
    return (q - zero_point) * scale


def _round_ste(t: Tensor) -> Tensor:
    return t + (t.round() - t).detach()


def _grad_scaled(t: Tensor, factor: float) -> Tensor:
    """`t` forward, its gradient times `factor` backward."""
    return (t - t * factor).detach() + t * factor


class ActivationFakeQuant(nn.Module):
    """Per-tensor uint8 fake quantisation with a learned scale and zero point."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.zero_point = nn.Parameter(torch.zeros(1))  # float, rounded and clamped to [0, 255] in the op
        self.enabled = True
        self.observing = False
        self.range = (0.0, 0.0)  # (min, max) seen while observing

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        if self.observing:
            self._observe(x)
        if torch.onnx.is_in_onnx_export():
            zp = int(self.zero_point.detach().round().clamp(*U8))
            scale = float(self.scale.detach().clamp(min=MIN_SCALE))
            return torch.fake_quantize_per_tensor_affine(x, scale, zp, *U8)
        grad_factor = 1.0 / math.sqrt(x[0].numel() * U8[1])
        return fake_quantize(x, self.scale.clamp(min=MIN_SCALE), self.zero_point, *U8, grad_factor)

    @torch.no_grad()
    def _observe(self, x: Tensor) -> None:
        lo, hi = min(self.range[0], float(x.min())), max(self.range[1], float(x.max()))
        self.range = (lo, hi)
        scale = max((hi - lo) / (U8[1] - U8[0]), MIN_SCALE)
        self.scale.fill_(scale)
        self.zero_point.fill_(min(max(round(U8[0] - lo / scale), U8[0]), U8[1]))

    def extra_repr(self) -> str:
        scale, zero_point = float(self.scale.detach()), float(self.zero_point.detach())
        return f"uint8 per tensor, scale={scale:.4g}, zero_point={zero_point:.1f}"


class WeightFakeQuant(nn.Module):
    """Per-output-channel int8 symmetric fake quantisation of a weight (`parametrize` it onto the conv).

    `reduce_range`: 7-bit weights in [-64, 63] (ONNX Runtime's `reduce_range`). x86 CPUs without VNNI (AVX2)
    multiply uint8 × int8 pairs with VPMADDUBSW, which saturates at 2^15: full-range weights then give other
    results than the QDQ graph specifies (measured: up to 18 output steps on a 3-conv model), 7-bit ones never
    saturate (2 · 255 · 64 < 2^15), so the int8 graph computes exactly the fake-quantised model on every CPU.
    """

    def __init__(self, channels: int, reduce_range: bool = True):
        super().__init__()
        self.qmin, self.qmax = S7 if reduce_range else S8
        self.scale = nn.Parameter(torch.ones(channels))
        self.register_buffer("zero_point", torch.zeros(channels))  # symmetric: always 0
        self.enabled = True
        self.observing = False

    def forward(self, w: Tensor) -> Tensor:  # C_out×C_in×kh×kw
        if not self.enabled:
            return w
        if self.observing:
            with torch.no_grad():
                amax = w.detach().abs().flatten(1).amax(1)
                self.scale.copy_((amax / ((self.qmax - self.qmin) / 2)).clamp(min=MIN_SCALE))
        if torch.onnx.is_in_onnx_export():  # the scale as an initializer: no clamp node on it in the graph
            self.scale.data.clamp_(min=MIN_SCALE)
            return torch.fake_quantize_per_channel_affine(w, self.scale, self.zero_point.int(), 0, *S8)  # baked
        shape = (-1,) + (1,) * (w.dim() - 1)
        scale = self.scale.clamp(min=MIN_SCALE).view(shape)
        grad_factor = 1.0 / math.sqrt(w[0].numel() * self.qmax)
        return fake_quantize(w, scale, self.zero_point.view(shape), self.qmin, self.qmax, grad_factor)

    def extra_repr(self) -> str:
        return f"int8 [{self.qmin}, {self.qmax}] per channel ({self.scale.numel()}), symmetric"


@torch.no_grad()
def bias_grid(bias: Tensor, input_scale: Tensor, weight_scale: Tensor) -> tuple[Tensor, Tensor]:
    """(q, step) per output channel: the int32 bias of ONNX Runtime's QLinearConv, q = round(b / step) (float64,
    half to even), on the grid step = input scale × weight scale (float32). The export writes q
    (`segkd.deploy.qdq_passes.quantize_conv_bias`) and the fake-quantised forward adds q · step
    (`bias_rounding`): one arithmetic for both."""
    step = (input_scale.double() * weight_scale.double()).float()
    return torch.round(bias.double() / step.double()), step


@torch.no_grad()
def bias_rounding(bias: Tensor, input_scale: Tensor, weight_scale: Tensor) -> Tensor:
    """q · step - b per output channel (`bias_grid`): what moves a conv's fp32 bias onto ONNX Runtime's int32 grid.
    Small (half an accumulator step at most), but a deep int8 network amplifies it: without it, MobileNetV3's QAT
    graph labelled 0.5 % of the pixels otherwise than its fake-quantised forward. No gradient: the bias trains as
    if exact (straight-through). A bias too large for the grid (a dead channel, weight scale ~0) stays exact, as
    the export widens that channel's weight scale to hold it."""
    q, step = bias_grid(bias, input_scale.clamp(min=MIN_SCALE), weight_scale.clamp(min=MIN_SCALE))
    return torch.where(q.abs() > INT32_BIAS_MAX, 0.0, q * step.double() - bias.double()).to(bias.dtype)


def fake_quantizers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (ActivationFakeQuant, WeightFakeQuant))]


def set_fake_quant(model: nn.Module, *, enabled: bool | None = None, observing: bool | None = None) -> None:
    """Switch every quantiser of `model` on/off, or into/out of calibration (entering it restarts the ranges)."""
    for q in fake_quantizers(model):
        if enabled is not None:
            q.enabled = enabled
        if observing is not None:
            q.observing = observing
            if observing and isinstance(q, ActivationFakeQuant):
                q.range = (0.0, 0.0)


@torch.no_grad()
def bake_weights(model: nn.Module) -> None:
    """Replace every fake-quantised weight by its quantised value (idempotent), so that tracing stores on-grid
    weights: a narrower range than int8's [-128, 127] then survives the ONNX QuantizeLinear."""
    for module in model.modules():
        plist = getattr(module, "parametrizations", None)
        if plist is None or "weight" not in plist:
            continue
        quantizer = next((q for q in plist["weight"] if isinstance(q, WeightFakeQuant)), None)
        if quantizer is not None and quantizer.enabled:
            original = plist["weight"].original
            original.copy_(quantizer(original))
