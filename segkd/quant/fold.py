"""BatchNorm and layer scales folded into the conv before them, as ONNX Runtime's graph optimiser does before int8.

    BatchNorm:    w' = w · γ/√(σ² + ε)   (per output channel)        b' = (b − μ) · γ/√(σ² + ε) + β
    layer scale:  w' = w · g                                          b' = b · g

A layer scale is a module with one per-channel parameter (timm's `LayerScale2d.gamma`, MetaFormer's
`Scale.scale`) whose output is its input times that parameter (checked on the forward that finds it). Left
unfolded it is an fp32 Mul, one more pass over the tensor, after a quantised conv; the post-training graph has it
folded into the conv before quantising (FastSegFormer-E's QAT int8 graph: 23 Mul unfolded, 5 folded).

Pairs are found by running the model once with hooks: a module whose input is a Conv2d's output tensor itself
(or the output of a BatchNorm that folds into that conv) follows that conv. Folding edits the conv's weight in
place (the same Parameter, so an optimizer keeps it), adds a bias where the conv had none, and puts in the
module's place what it still has to do: nothing, or the dropout and activation of a norm-act layer (timm's
BatchNormAct2d). Folded BN statistics no longer move: QAT trains with the frozen statistics, as the int8 graph
runs; a folded layer scale trains as part of the conv's weight.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

NORMS = (nn.BatchNorm2d,)
SCALE_PARAMS = ("gamma", "scale")  # timm LayerScale2d, MetaFormer Scale


def find_fold_pairs(model: nn.Module, x: Tensor) -> list[tuple[str, str]]:
    """(conv path, module path) of every BatchNorm2d or layer scale that reads a Conv2d's output directly, or a
    folded BatchNorm's output, in forward order (one forward)."""
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, str] = {}  # id(conv output) -> conv path
    keep: list[Tensor] = []  # outputs stay alive so their ids stay unique during the pass
    pairs: list[tuple[str, str]] = []

    def on_conv(module: nn.Module, args: tuple, out: Tensor) -> None:
        produced[id(out)] = names[module]
        keep.append(out)

    def on_norm(module: nn.Module, args: tuple, out: Tensor) -> None:
        conv = produced.get(id(args[0]))
        if conv is None or not (module.affine and module.track_running_stats):
            return
        pairs.append((conv, names[module]))
        if isinstance(_after_norm(module), nn.Identity):  # nothing left between the conv and what reads `out`
            produced[id(out)] = conv
            keep.append(out)

    def on_scale(module: nn.Module, args: tuple, out: Tensor) -> None:
        conv = produced.get(id(args[0]))
        if conv is not None and torch.allclose(out, args[0] * _scale_of(module).reshape(1, -1, 1, 1)):
            pairs.append((conv, names[module]))

    handles = [m.register_forward_hook(on_conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_hook(on_norm) for m in model.modules() if isinstance(m, NORMS)]
    handles += [m.register_forward_hook(on_scale) for m in model.modules() if _scale_of(m) is not None]
    forward_with_hooks(model, x, handles)
    return list(dict.fromkeys(pairs))


def _scale_of(module: nn.Module) -> Tensor | None:
    """The per-channel parameter of a layer-scale module (a leaf with that one parameter), else None."""
    params = dict(module.named_parameters(recurse=False))
    if next(module.children(), None) is not None or len(params) != 1:
        return None
    name, value = next(iter(params.items()))
    return value.reshape(-1) if name in SCALE_PARAMS and value.numel() == value.shape[0] else None


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
def fold_into_convs(model: nn.Module, pairs: list[tuple[str, str]]) -> None:
    """Fold each (conv, BatchNorm or layer scale) pair of `model` in place, in order."""
    for conv_path, path in pairs:
        conv, module = model.get_submodule(conv_path), model.get_submodule(path)
        shape = (-1, *([1] * (conv.weight.ndim - 1)))
        if isinstance(module, NORMS):
            factor = module.weight / torch.sqrt(module.running_var + module.eps)  # C_out
            bias = conv.bias if conv.bias is not None else torch.zeros_like(module.running_mean)
            folded = (bias - module.running_mean) * factor + module.bias
            replacement = _after_norm(module)
        else:
            factor = _scale_of(module).detach().clone()
            folded = conv.bias * factor if conv.bias is not None else torch.zeros_like(factor)
            replacement = nn.Identity()
        conv.weight.mul_(factor.reshape(shape))
        if conv.bias is None:
            conv.bias = nn.Parameter(folded)
        else:
            conv.bias.copy_(folded)
        _replace(model, path, replacement)


def _after_norm(bn: nn.Module) -> nn.Module:
    """What a norm layer does besides normalising (timm's BatchNormAct2d: dropout, then activation)."""
    rest = [getattr(bn, name) for name in ("drop", "act") if isinstance(getattr(bn, name, None), nn.Module)]
    return nn.Sequential(*rest) if rest else nn.Identity()


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)
