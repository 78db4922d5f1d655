"""Reading weight files: torch.save archives and safetensors, and a one-line reason for each bad file."""

import pytest
import torch
from safetensors.torch import save_file as save_safetensors
from torch import nn

from segkd.errors import WeightsError
from segkd.models.checkpoint import read_weights_file


def test_reads_torch_and_safetensors_files(tmp_path):
    state = {"conv.weight": torch.randn(4, 3, 3, 3), "conv.bias": torch.randn(4)}
    torch.save(state, tmp_path / "w.pt")
    save_safetensors(state, str(tmp_path / "w.safetensors"))
    for name in ("w.pt", "w.safetensors"):
        loaded = read_weights_file(tmp_path / name)
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def _garbage(path):
    path.write_bytes(b"not weights at all\n")


def _pickled_module(path):
    torch.save(nn.Conv2d(1, 1, 1), path)


def _truncated(path):
    torch.save({"w": torch.zeros(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize("name, write, reason", [
    ("garbage.pt", _garbage, "not a PyTorch weights file (neither a torch.save archive nor a tensor pickle)"),
    ("model.pt", _pickled_module, "stores the Python object torch.nn.modules.conv.Conv2d; segkd reads tensors only"),
    ("cut.pth", _truncated, "damaged or incomplete torch.save archive"),
    ("garbage.safetensors", _garbage, "not a readable safetensors file (Error while deserializing header"),
])
def test_a_bad_file_fails_in_one_line_naming_it(tmp_path, name, write, reason):
    write(tmp_path / name)
    with pytest.raises(WeightsError) as info:
        read_weights_file(tmp_path / name)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / name}: {reason}") and "\n" not in message
    assert len(message) - len(str(tmp_path)) < 200
