"""PaddlePaddle weight files (`.pdparams`): read them without running their pickle, and Paddle's layout rules.

`paddle.save(layer.state_dict(), path)` pickles a plain dict of name -> numpy array, plus a
`StructuredToParameterName@@` table of name -> Paddle's internal parameter name. `read_pdparams` unpickles it
with an unpickler that resolves only the numpy globals an array needs (`_reconstruct`, `ndarray`, `dtype`, and
protocol 5's `_frombuffer`): a file that names any other global (a class, `os.system`, `builtins.eval`) is
refused in one line before anything is built, so a pickle that tries to run code never runs.

`from_paddle(state, model, paddle_key, source)` maps a read state dict onto a model with a family's key
function (segkd key -> Paddle key): Paddle's BatchNorm statistics are `_mean` / `_variance`, it stores no
`num_batches_tracked` (the model's own are kept), and its Linear weights are `in×out` (transposed here).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from segkd.errors import WeightsError, first_line

NAME_TABLE = "StructuredToParameterName@@"  # paddle.save's table of Paddle's internal parameter names
_NUMPY_GLOBALS = {
    (module, name)
    for core in ("numpy.core", "numpy._core")
    for module, name in ((f"{core}.multiarray", "_reconstruct"), (f"{core}.numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype")}
PADDLE_BATCHNORM = (("running_mean", "_mean"), ("running_var", "_variance"))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise WeightsError(f"{self.path}: refused, the pickle names the Python global {module}.{name} "
                               "(a .pdparams file holds numpy arrays only)")
        return super().find_class(module, name)


def read_pdparams(path: str | Path) -> dict[str, Tensor]:
    """A `.pdparams` file -> name -> tensor; anything but a dict of numeric arrays fails naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            obj = _NumpyOnlyUnpickler(f, path).load()
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001  (truncated file, not a pickle, bad opcode)
        raise WeightsError(f"{path}: not a readable .pdparams pickle ({first_line(e, 160)})") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: a .pdparams file holds a dict of arrays, this one a {type(obj).__name__}")
    obj.pop(NAME_TABLE, None)
    out = {}
    for key, value in obj.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            raise WeightsError(f"{path}: '{key}' is not a numeric array ({type(value).__name__})")
        out[key] = torch.from_numpy(np.ascontiguousarray(value))
    return out


def from_paddle(state: dict[str, Tensor], model: nn.Module, paddle_key: Callable[[str], str],
                source: str) -> dict[str, Tensor]:
    """`state` (Paddle's keys) renamed to `model`'s with `paddle_key` (segkd key -> Paddle key, BatchNorm
    statistics renamed here); a Paddle key without a counterpart fails naming it."""
    own = model.state_dict()
    lookup = {}
    for key in own:
        if key.endswith("num_batches_tracked"):
            continue
        theirs = paddle_key(key)
        for ours_leaf, paddle_leaf in PADDLE_BATCHNORM:
            theirs = theirs[: -len(ours_leaf)] + paddle_leaf if theirs.endswith(ours_leaf) else theirs
        lookup[theirs] = key
    linear = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    out = {k: v for k, v in own.items() if k.endswith("num_batches_tracked")}  # Paddle keeps no step count
    for key, value in state.items():
        ours = lookup.get(key)
        if ours is None:
            raise WeightsError(f"{source}: Paddle key '{key}' has no counterpart in {type(model).__name__}")
        out[ours] = value.t() if ours in linear else value  # Paddle's Linear weight is in×out
    return out
