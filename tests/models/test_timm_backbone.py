"""TimmBackbone and the original-repository key layouts: checked against timm's own converters."""

import re
from functools import partial

import pytest
import timm
import torch
from safetensors.torch import save_file as save_safetensors
from timm.models.metaformer import checkpoint_filter_fn as metaformer_filter
from timm.models.swin_transformer import checkpoint_filter_fn as swin_filter
from torch import nn

from segkd.errors import WeightsError
from segkd.models.fastsegformer import VARIANTS
from segkd.models.layouts import apply_rules
from segkd.models.swin_att_unet import SWIN_ORIGINAL
from segkd.models.timm_backbone import TimmBackbone, load_backbone_weights

SWIN_T = "swin_tiny_patch4_window7_224"
ORIGINAL = {  # the families' original-layout rules
    "poolformer_s12": partial(apply_rules, VARIANTS["poolformer_s12"].original_rules),
    SWIN_T: partial(apply_rules, SWIN_ORIGINAL),
}


@pytest.mark.parametrize("name, timm_filter, kwargs", [
    ("poolformer_s12", metaformer_filter, {}),
    (SWIN_T, swin_filter, {"strict_img_size": False}),
])
def test_original_layout_agrees_with_timms_converter(name, timm_filter, kwargs):
    """timm converts the original repositories' files itself; segkd's names must convert to the same tensors."""
    backbone = TimmBackbone(name, original_key=ORIGINAL[name], **kwargs)
    weights, original, timm_names = backbone.state_dict(), backbone.original_keys(), backbone.timm_keys()
    converted = timm_filter({original[k]: v for k, v in weights.items()}, timm.create_model(name, **kwargs))
    assert {timm_names[k]: v for k, v in weights.items()}.keys() == converted.keys()
    assert all(torch.equal(converted[timm_names[k]], v) for k, v in weights.items())


def test_outputs_are_nchw_with_output_norms():
    backbone = TimmBackbone(SWIN_T, out_norm=nn.LayerNorm, out_norms={3: "norm"}, strict_img_size=False).eval()
    with torch.no_grad():
        feats = backbone(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 96, 16, 16), (1, 192, 8, 8), (1, 384, 4, 4), (1, 768, 2, 2)]
    assert backbone.channels == [96, 192, 384, 768] and backbone.reductions == [4, 8, 16, 32]
    assert isinstance(backbone.out_norms[3], nn.LayerNorm) and isinstance(backbone.out_norms[0], nn.Identity)
    assert feats[3].mean(1).abs().max() < 1e-4  # LayerNorm over channels (weight 1, bias 0)


def test_loads_microsofts_swin_layout(tmp_path):
    """Microsoft's files put PatchMerging at the end of a stage: `layers.1.downsample.norm` is 768 wide there and
    384 wide in timm's layout, so the loader must pick the layout for the whole file, not key by key."""
    imagenet = timm.create_model(SWIN_T, pretrained=False)
    def microsoft_name(key):
        key = re.sub(r"^layers\.(\d)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", key)
        return key.replace("head.fc.", "head.")

    microsoft = {microsoft_name(k): v for k, v in imagenet.state_dict().items()}
    microsoft["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)  # saved by some releases, recomputed here
    torch.save({"model": microsoft}, tmp_path / "swin_tiny_patch4_window7_224.pth")
    backbone = TimmBackbone(SWIN_T, out_norm=nn.LayerNorm, out_norms={3: "norm"}, original_key=ORIGINAL[SWIN_T],
                            strict_img_size=False)
    load_backbone_weights(backbone, tmp_path / "swin_tiny_patch4_window7_224.pth")
    assert torch.equal(backbone.body.layers_1.downsample.norm.weight, imagenet.layers[1].downsample.norm.weight)
    assert torch.equal(backbone.out_norms[3].bias, imagenet.norm.bias)


def test_loads_a_hub_safetensors_file(tmp_path):
    """timm's weights on the Hugging Face Hub are `model.safetensors` in timm's own layout."""
    imagenet = timm.create_model("poolformer_s12", pretrained=False)
    save_safetensors(imagenet.state_dict(), str(tmp_path / "model.safetensors"))
    backbone = TimmBackbone("poolformer_s12")
    load_backbone_weights(backbone, tmp_path / "model.safetensors")
    assert torch.equal(backbone.body.stages_3.blocks[1].mlp.fc2.weight, imagenet.stages[3].blocks[1].mlp.fc2.weight)


def test_shape_mismatch_names_the_key(tmp_path):
    state = timm.create_model("poolformer_s12", pretrained=False).state_dict()
    state["stages.1.downsample.conv.weight"] = torch.zeros(128, 64, 5, 5)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"'stages.1.downsample.conv.weight' has shape \(128, 64, 5, 5\), "
                                           r"the model expects \(128, 64, 3, 3\)"):
        load_backbone_weights(TimmBackbone("poolformer_s12"), tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="weights file not found"):
        load_backbone_weights(TimmBackbone("poolformer_s12"), tmp_path / "absent.pth")
