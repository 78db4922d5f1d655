"""What ONNX's rounding costs in QAT: a train step with segkd's `fake_quantize` against torch's fused kernels.

    python benchmarks/fake_quant.py [--model mobilev3_large_lraspp] [--size 128] [--batch 2] [--channels-last]

`segkd.quant.fake_quantize` computes round(x / scale) in plain torch ops, as ONNX's QuantizeLinear does; torch's
`_fake_quantize_learnable_per_*_affine` kernels are one fused op each but round x · (1/scale), which rounds ties
the other way. The model is prepared for QAT (BatchNorm folded, every conv but the logits' one quantised),
calibrated on one batch, then timed in interleaved rounds (median of 6 SGD steps per round, 4 rounds), each
round switching every quantiser between the two implementations, so machine load hits both alike.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from segkd.models import create_model
from segkd.quant import ActivationFakeQuant, WeightFakeQuant, calibrating, prepare_qat
from segkd.quant.fake_quant import MIN_SCALE, U8


def torch_activation(self: ActivationFakeQuant, x: torch.Tensor) -> torch.Tensor:
    grad_factor = 1.0 / math.sqrt(x[0].numel() * U8[1])
    return torch._fake_quantize_learnable_per_tensor_affine(x, self.scale.clamp(min=MIN_SCALE), self.zero_point,
                                                            *U8, grad_factor)


def torch_weight(self: WeightFakeQuant, w: torch.Tensor) -> torch.Tensor:
    grad_factor = 1.0 / math.sqrt(w[0].numel() * self.qmax)
    return torch._fake_quantize_learnable_per_channel_affine(w, self.scale.clamp(min=MIN_SCALE), self.zero_point, 0,
                                                             self.qmin, self.qmax, grad_factor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilev3_large_lraspp")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = create_model(args.model, num_classes=4)
    prepare_qat(model, torch.randn(1, 3, args.size, args.size))
    x = torch.randn(args.batch, 3, args.size, args.size).to(memory_format=fmt)
    y = torch.randint(0, 4, (args.batch, args.size, args.size))
    with calibrating(model):
        model(x)
    model = model.train().to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    impls = {"segkd fake_quantize": (ActivationFakeQuant.forward, WeightFakeQuant.forward),
             "torch fused kernels": (torch_activation, torch_weight)}
    rounds: dict[str, list[float]] = {name: [] for name in impls}
    try:
        for _ in range(4):
            for name, (activation, weight) in impls.items():
                ActivationFakeQuant.forward, WeightFakeQuant.forward = activation, weight
                steps = []
                for _ in range(6):
                    start = time.perf_counter()
                    out = F.interpolate(model(x), size=y.shape[-2:], mode="bilinear")
                    loss = F.cross_entropy(out, y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    steps.append(time.perf_counter() - start)
                rounds[name].append(statistics.median(steps))
    finally:
        ActivationFakeQuant.forward, WeightFakeQuant.forward = impls["segkd fake_quantize"]
    print(f"{args.model} {args.size}×{args.size}, batch {args.batch}, {torch.get_num_threads()} threads"
          + (", channels_last" if args.channels_last else "") + ": QAT train step, median over 4 rounds")
    base = statistics.median(rounds["torch fused kernels"])
    for name, times in rounds.items():
        ms = statistics.median(times)
        print(f"  {name:<20} {1000 * ms:7.0f} ms  ({ms / base:.2f}× torch's kernels)")


if __name__ == "__main__":
    main()
