"""BatchNorm folded into the conv before it, as ONNX Runtime's graph optimiser does before int8 quantisation.

    w' = w · γ/√(σ² + ε)   (per output channel)        b' = (b − μ) · γ/√(σ² + ε) + β

Pairs are found by running the model once with hooks: a BatchNorm2d whose input is a Conv2d's output tensor
itself follows that conv. Folding edits the conv's weight in place (the same Parameter, so an optimizer keeps
it), adds a bias where the conv had none, and puts in the BatchNorm's place what it still has to do: nothing,
or the dropout and activation of a norm-act layer (timm's BatchNormAct2d). Folded BN statistics no longer
move: QAT trains with the frozen statistics, as the int8 graph runs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

NORMS = (nn.BatchNorm2d,)


def find_conv_bn_pairs(model: nn.Module, x: Tensor) -> list[tuple[str, str]]:
    """(conv path, BatchNorm path) of every BatchNorm2d that reads a Conv2d's output directly (one forward)."""
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, str] = {}  # id(conv output) -> conv path
    keep: list[Tensor] = []  # outputs stay alive so their ids stay unique during the pass
    pairs: list[tuple[str, str]] = []

    def on_conv(module: nn.Module, args: tuple, out: Tensor) -> None:
        produced[id(out)] = names[module]
        keep.append(out)

    def on_norm(module: nn.Module, args: tuple) -> None:
        conv = produced.get(id(args[0]))
        if conv is not None and module.affine and module.track_running_stats:
            pairs.append((conv, names[module]))

    handles = [m.register_forward_hook(on_conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_pre_hook(on_norm) for m in model.modules() if isinstance(m, NORMS)]
    forward_with_hooks(model, x, handles)
    return list(dict.fromkeys(pairs))


def forward_with_hooks(model: nn.Module, x: Tensor, handles: list) -> None:
    """One eval-mode forward of `model` on `x` without gradients; then `handles` are removed and the mode restored."""
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()


@torch.no_grad()
def fold_batchnorm(model: nn.Module, pairs: list[tuple[str, str]]) -> None:
    """Fold each (conv, BatchNorm) pair of `model` in place."""
    for conv_path, bn_path in pairs:
        conv, bn = model.get_submodule(conv_path), model.get_submodule(bn_path)
        factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # C_out
        conv.weight.mul_(factor.reshape(-1, *([1] * (conv.weight.ndim - 1))))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        folded = (bias - bn.running_mean) * factor + bn.bias
        if conv.bias is None:
            conv.bias = nn.Parameter(folded)
        else:
            conv.bias.copy_(folded)
        _replace(model, bn_path, _after_norm(bn))


def _after_norm(bn: nn.Module) -> nn.Module:
    """What a norm layer does besides normalising (timm's BatchNormAct2d: dropout, then activation)."""
    rest = [getattr(bn, name) for name in ("drop", "act") if isinstance(getattr(bn, name, None), nn.Module)]
    return nn.Sequential(*rest) if rest else nn.Identity()


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)
