"""Swin-T-Att-UNet teacher: exact size, taps, any multiple of 32, reference checkpoints, reference window order."""

import pytest
import timm
import torch
from timm.models.swin_transformer import SwinTransformerBlock

from segkd.errors import ConfigError, WeightsError
from segkd.models import create_model, load_weights
from segkd.models.swin_att_unet import PadFirstSwinBlock, reference_keys

TAPS_512 = {"stage1": (96, 128), "stage2": (192, 64), "stage3": (384, 32), "stage4": (768, 16),
            "bottle": (1024, 16), "a3": (256, 64), "a1": (64, 256), "logits": (4, 512)}  # spec §2
REFERENCE_SAMPLES = {
    "common_backbone.patch_embed.proj.weight": (96, 3, 4, 4), "common_backbone.patch_embed.norm.bias": (96,),
    "common_backbone.layers.0.blocks.1.attn.relative_position_bias_table": (169, 3),
    "common_backbone.layers.2.blocks.5.attn.relative_position_index": (49, 49),
    "common_backbone.layers.3.blocks.1.mlp.fc2.weight": (768, 3072),
    "common_backbone.layers.0.downsample.reduction.weight": (192, 384),
    "common_backbone.layers.2.downsample.norm.weight": (1536,), "common_backbone.norm.weight": (768,),
    "bottle.0.weight": (1024, 768, 3, 3), "bottle.1.running_var": (1024,),
    "up4.up.1.weight": (512, 1024, 3, 3), "up1.up.2.bias": (64,),
    "change1.0.weight": (512, 384, 1, 1), "change3.1.weight": (128,),
    "Att4.W_g.0.weight": (256, 512, 1, 1), "Att1.W_x.1.running_mean": (32,), "Att2.psi.0.weight": (1, 64, 1, 1),
    "convert1.weight": (192, 512, 1, 1), "convert3.weight": (128, 128, 1, 1), "convert4.bias": (64,),
    "conv4.conv.0.weight": (512, 704, 3, 3), "conv1.conv.3.weight": (64, 64, 3, 3), "conv3.conv.4.bias": (256,),
    "cnn_up.1.conv.0.weight": (64, 3, 3, 3), "cnn_up.1.conv.4.running_var": (64,),
    "final_up_conv.1.weight": (4, 64, 3, 3),
}


@pytest.fixture(scope="module")
def teacher(build):
    return build("swin_t_att_unet")


def test_parameter_count_equals_the_reference(teacher):
    assert sum(p.numel() for p in teacher.parameters()) == 49_229_322


def test_taps_at_512(teacher):
    with torch.no_grad():
        logits, taps = teacher.forward_taps(torch.rand(1, 3, 512, 512))
    assert {k: (v.shape[1], v.shape[2]) for k, v in taps.items()} == TAPS_512
    assert list(taps) == list(TAPS_512)
    assert logits.shape == (1, 4, 512, 512)


def test_runs_at_224_and_non_square_multiples_of_32(teacher):
    with torch.no_grad():
        logits, taps = teacher.forward_taps(torch.rand(1, 3, 224, 224))
        assert taps["a1"].shape == (1, 64, 112, 112) and logits.shape == (1, 4, 224, 224)
        assert teacher(torch.rand(1, 3, 64, 96)).shape == (1, 4, 64, 96)
    with pytest.raises(ConfigError, match=r"multiples of 32, got 500×512"):
        teacher(torch.rand(1, 3, 500, 512))


def test_freeze_and_unfreeze_backbone():
    model = create_model("swin_t_att_unet", num_classes=4)
    model.freeze_backbone()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("backbone."))
    model.unfreeze_backbone()
    assert all(p.requires_grad for p in model.parameters())


def test_reference_checkpoint_round_trip(randomize, to_reference, tmp_path):
    source = randomize(create_model("swin_t_att_unet", num_classes=4))
    reference = to_reference(source, reference_keys(source))
    assert len(reference) == 402
    assert {k: tuple(reference[k].shape) for k in REFERENCE_SAMPLES} == REFERENCE_SAMPLES
    torch.save(reference, tmp_path / "teacher.pth")

    loaded = load_weights(create_model("swin_t_att_unet", num_classes=4), tmp_path / "teacher.pth").eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert (loaded(x) - source(x)).abs().max() <= 1e-4

    del reference["Att3.psi.1.weight"]
    torch.save(reference, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"missing key 'Att3.psi.1.weight'"):
        load_weights(loaded, tmp_path / "missing.pth")


def test_backbone_weights_from_a_timm_swin_file(tmp_path):
    imagenet = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
    torch.save(imagenet.state_dict(), tmp_path / "swin_t.pth")
    model = create_model("swin_t_att_unet", num_classes=4, backbone_weights=str(tmp_path / "swin_t.pth"))
    reduction = model.backbone.body.layers_2.downsample.reduction.weight
    assert torch.equal(reduction, imagenet.layers[2].downsample.reduction.weight)
    assert torch.equal(model.backbone.out_norms[3].weight, imagenet.norm.weight)  # the final norm feeds `stage4`


def test_pad_first_window_order():
    """Same as timm's block when no padding is needed; the reference order otherwise (padded, then shifted)."""
    torch.manual_seed(0)
    block = SwinTransformerBlock(96, (16, 16), num_heads=3, shift_size=3, always_partition=True, dynamic_mask=True)
    timm_block = SwinTransformerBlock(96, (16, 16), num_heads=3, shift_size=3, always_partition=True, dynamic_mask=True)
    timm_block.load_state_dict(block.state_dict())
    block.__class__ = PadFirstSwinBlock
    block.eval(), timm_block.eval()
    with torch.no_grad():
        x = torch.randn(1, 14, 14, 96)
        assert torch.allclose(block(x), timm_block(x), atol=1e-5)
        x = torch.randn(1, 16, 16, 96)
        padded = torch.nn.functional.pad(x, (0, 0, 0, 5, 0, 5))
        assert not torch.allclose(block(x), timm_block(x), atol=1e-3)
        # the attention branch of pad-first on 16×16 = timm's on the map zero-padded to 21×21, cropped back
        assert torch.allclose(block._attn(x), timm_block._attn(padded)[:, :16, :16], atol=1e-5)
