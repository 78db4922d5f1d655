"""Shared model fixtures: models built once per test module, random weights, reference-layout state dicts."""

import huggingface_hub
import pytest
import torch
from safetensors.torch import save_file as save_safetensors
from torch import nn

from segkd.models import create_model


@pytest.fixture(scope="module")
def build():
    """`build(arch, **options)` -> an eval-mode model with 4 classes, cached per test module (do not mutate)."""
    cache = {}

    def _build(arch, **options):
        key = (arch, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = create_model(arch, num_classes=4, **options).eval()
        return cache[key]

    return _build


@pytest.fixture
def randomize():
    """`randomize(model)`: every parameter and BatchNorm statistic set to distinct random values (seeded)."""

    def _randomize(model):
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1, generator=gen)
                    m.running_var.uniform_(0.5, 1.5, generator=gen)
        return model.eval()

    return _randomize


@pytest.fixture
def to_reference():
    """`to_reference(model, key_map, reshape)`: the model's weights under the reference repository's names.

    `key_map` maps segkd keys to reference keys (non-persistent index buffers included); `reshape(ref_key, t)`
    returns the tensor in the reference's shape.
    """

    def _to_reference(model, key_map, reshape=lambda key, t: t):
        tensors = dict(model.named_buffers()) | model.state_dict()
        return {ref: reshape(ref, tensors[ours].clone()) for ours, ref in key_map.items()}

    return _to_reference


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An offline Hugging Face cache under a temporary HF_HOME (HF_HUB_OFFLINE=1), empty at first.

    `hf_cache(repo_id, filename, tensors)` writes `tensors` as a safetensors file in the hub's cache layout
    (`hub/models--org--name/snapshots/<commit>/<filename>` + `refs/main`), as a download would have left it.
    """
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads both at import time; the running process needs its constants updated too
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
    commit = "0123456789abcdef0123456789abcdef01234567"

    def _write(repo_id, filename, tensors):
        repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
        (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        path = repo / "snapshots" / commit / filename
        save_safetensors({k: v.contiguous() for k, v in tensors.items()}, str(path))
        return path

    return _write
