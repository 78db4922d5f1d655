"""segkd checkpoints and weight loading.

A segkd checkpoint is a dict saved with `torch.save`:
    {"format": "segkd", "version": str, "arch": str, "model": state_dict, "config": resolved config dict,
     "classes": [names], "palette": [[r, g, b]], ...training state in last.pt}
It rebuilds itself: `load_checkpoint(path)` needs nothing else. A quantisation-aware (QAT) checkpoint adds
`"quant": QATSpec dict` (BatchNorms folded, convs fake-quantised, the fp32 logits conv): loading applies that
surgery to the freshly built model before its weights load, so it comes back fake-quantised. Files are always read with
`torch.load(..., weights_only=True)`, or as safetensors when the name ends in `.safetensors` (what the Hugging
Face Hub serves for timm and transformers models), or as PaddlePaddle's numpy pickle when it ends in `.pdparams`
(`segkd.models.pdparams`: numpy arrays only, any other global refused).

`load_weights(model, path)` also takes foreign state dicts (a paper's released weights): the family's
`checkpoint_filter_fn(state_dict, model)` (recorded on the model by the builder) maps their keys, then the load
is strict and a missing or unexpected key is an error naming it. Checkpoints of an older segkd whose module
paths have since moved load through the family's `legacy_keys` renames.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file as load_safetensors
from torch import nn

from segkd import __version__
from segkd.errors import WeightsError, first_line
from segkd.models.pdparams import read_pdparams
from segkd.models.registry import create_model
from segkd.quant import QATSpec, apply_qat, is_qat

FORMAT = "segkd"


def read_weights_file(path: str | Path) -> Any:
    """`torch.load` with weights_only=True (`.safetensors` / `.pdparams`: their tensors); unreadable files fail naming
    the file and saying why in a line."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix == ".pdparams":
        return read_pdparams(path)  # PaddlePaddle's pickle of numpy arrays, read without running it
    if path.suffix == ".safetensors":
        try:
            return load_safetensors(path, device="cpu")
        except Exception as e:  # noqa: BLE001  (SafetensorError, or a header that is not JSON)
            raise WeightsError(f"{path}: not a readable safetensors file ({first_line(e, 160)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (pickle errors, truncated zips, foreign objects refused by weights_only)
        raise WeightsError(f"{path}: {_torch_load_failure(e)}") from None


def _torch_load_failure(e: Exception) -> str:
    """torch.load's multi-paragraph errors, said in a line."""
    text = str(e)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return (f"stores the Python object {refused[1]}; segkd reads tensors only (torch.load weights_only=True): "
                "save model.state_dict() instead")
    if "WeightsUnpickler error" in text or "invalid load key" in text:
        return "not a PyTorch weights file (neither a torch.save archive nor a tensor pickle)"
    if "central directory" in text or "PytorchStreamReader" in text:
        return "damaged or incomplete torch.save archive (a truncated download or copy?)"
    return f"not a readable weights file ({first_line(e, 160)})"


def is_segkd_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT and "model" in obj and "config" in obj


def checkpoint_payload(model: nn.Module, config: dict, **extra: Any) -> dict:
    """The dict a segkd checkpoint holds; `extra` adds training state (optimizer, epoch, ...)."""
    quant = {"quant": model.qat_spec.to_dict()} if is_qat(model) else {}
    return {
        "format": FORMAT,
        "version": __version__,
        "arch": config["model"]["arch"],
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config,
        "classes": list(config["data"]["classes"]),
        "palette": config["data"]["palette"],
        **quant,
        **extra,
    }


def read_checkpoint(path: str | Path) -> dict:
    """A segkd checkpoint dict; anything else fails naming the file."""
    obj = read_weights_file(path)
    if not is_segkd_checkpoint(obj):
        raise WeightsError(f"{path}: not a segkd checkpoint (use --preset to load a foreign state dict)")
    return obj


def build_model(model_cfg: dict, init_backbone: bool = False) -> nn.Module:
    """The model a config's `model` section describes. Its backbone gets `pretrained` / `backbone_weights` only
    with `init_backbone` (a new training run); a model rebuilt from a checkpoint never reads them."""
    options = dict(model_cfg.get("options", {}))
    if init_backbone and model_cfg.get("pretrained"):
        options["pretrained"] = True
    if init_backbone and model_cfg.get("backbone_weights"):
        options["backbone_weights"] = model_cfg["backbone_weights"]
    return create_model(model_cfg["arch"], num_classes=model_cfg["num_classes"], **options)


def load_checkpoint(path: str | Path) -> nn.Module:
    """Rebuild the model from a segkd checkpoint alone and load its weights (eval mode)."""
    ckpt = read_checkpoint(path)
    model = build_model(ckpt["config"]["model"])
    _apply_quant(model, ckpt)
    load_state_strict(model, upgrade_keys(model, ckpt["model"]), path)
    return model.eval()


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a segkd checkpoint or a foreign state dict (layout detected by the family) into `model`."""
    obj = read_weights_file(path)
    if is_segkd_checkpoint(obj):
        arch = getattr(model, "arch", None)
        if arch is not None and obj["arch"] != arch:
            raise WeightsError(f"{path}: checkpoint of model '{obj['arch']}', not '{arch}'")
        _apply_quant(model, obj)
        state = upgrade_keys(model, obj["model"])
    else:
        state = unwrap_state_dict(obj, path)
        filter_fn = getattr(model, "checkpoint_filter_fn", None)
        if filter_fn is not None:
            state = filter_fn(state, model)
    load_state_strict(model, state, path)
    return model


def _apply_quant(model: nn.Module, ckpt: dict) -> None:
    """Make `model` fake-quantised as a QAT checkpoint's `quant` metadata says (before its weights load)."""
    if ckpt.get("quant") and not is_qat(model):
        apply_qat(model, QATSpec.from_dict(ckpt["quant"]))


def upgrade_keys(model: nn.Module, state: dict) -> dict:
    """A segkd checkpoint saved before its family's modules moved, under today's keys.

    A family lists its moves as `legacy_keys = ((regex, replacement), ...)` on the class; they apply only when the
    state dict has keys the model lacks, so current checkpoints pass untouched.
    """
    rules = getattr(model, "legacy_keys", ())
    own = model.state_dict()
    if not rules or all(k in own for k in state):
        return state
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def unwrap_state_dict(obj: Any, path: str | Path) -> dict:
    """A plain state dict out of the common wrappers ({'state_dict': ...}, {'model': ...}, `module.` prefix)."""
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: no state dict of tensors found")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_state_strict(model: nn.Module, state: dict, path: str | Path) -> None:
    """Load `state` into `model`: every key must match by name and shape, or the error names the first that does not."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        raise WeightsError(f"{path}: missing key '{missing[0]}'" + _more(missing))
    if unexpected:
        raise WeightsError(f"{path}: unexpected key '{unexpected[0]}'" + _more(unexpected))
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise WeightsError(
                f"{path}: '{k}' has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}"
                + (" (different number of classes?)" if v.ndim and own[k].ndim and v.shape[0] != own[k].shape[0] else "")
            )
    model.load_state_dict(state, strict=True)


def _more(keys: list[str]) -> str:
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
