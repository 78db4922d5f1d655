"""FastSegFormer-E/P: exact sizes, shapes, taps, the -E size limit, reference checkpoints, ImageNet backbones."""

import re

import pytest
import timm
import torch
from fvcore.nn import FlopCountAnalysis

from segkd.errors import ConfigError, WeightsError
from segkd.models import create_model, load_weights
from segkd.models.fastsegformer import reference_keys

# exact parameter counts of the reference model (spec §1.3)
PARAMS = [
    ("fastsegformer_p", {}, 14_891_940),
    ("fastsegformer_e", {}, 5_013_044),
    ("fastsegformer_p", {"pyramid": "ppm", "detail_branch": False}, 13_547_460),
    ("fastsegformer_e", {"detail_branch": False}, 5_001_556),
]
TAPS_224 = {  # spec §1.2 item 7, batch 1
    "fastsegformer_p": {"stage1": (64, 56), "stage2": (128, 28), "stage3": (320, 14), "stage4": (512, 7),
                        "neck": (512, 7), "fusion": (512, 28), "detail": (32, 112), "logits": (4, 224)},
    "fastsegformer_e": {"stage1": (32, 56), "stage2": (48, 28), "stage3": (96, 14), "stage4": (176, 7),
                        "neck": (320, 7), "fusion": (320, 28), "detail": (32, 112), "logits": (4, 224)},
}


@pytest.mark.parametrize("arch, options, params", PARAMS)
def test_parameter_counts_equal_the_reference(build, arch, options, params):
    assert sum(p.numel() for p in build(arch, **options).parameters()) == params


@pytest.mark.parametrize("arch", ["fastsegformer_p", "fastsegformer_e"])
def test_taps_at_224(build, arch):
    model = build(arch)
    with torch.no_grad():
        logits, taps = model.forward_taps(torch.rand(1, 3, 224, 224))
    assert {k: (v.shape[1], v.shape[2]) for k, v in taps.items()} == TAPS_224[arch]
    assert list(taps) == list(TAPS_224[arch])
    assert logits.shape == (1, 4, 224, 224)


@pytest.mark.parametrize("options", [{}, {"pyramid": "ppm", "detail_branch": False}])
@pytest.mark.parametrize("size", [224, 512])
def test_p_runs_at_any_multiple_of_32(build, options, size):
    model = build("fastsegformer_p", **options)
    with torch.no_grad():
        logits, taps = model.forward_taps(torch.rand(1, 3, size, size))
    assert logits.shape == (1, 4, size, size)
    assert taps["fusion"].shape[-1] == size // 8
    assert ("detail" in taps) == (options == {})
    assert taps["logits"].shape[-1] == (size if "detail" in taps else size // 8)


def test_e_without_irb_outputs_input_size(build):
    with torch.no_grad():
        assert build("fastsegformer_e", detail_branch=False)(torch.rand(1, 3, 224, 224)).shape == (1, 4, 224, 224)


def test_e_only_runs_at_224(build):
    with pytest.raises(ConfigError, match=r"only runs at 224×224.*got 256×256.*data.input_size=224"):
        build("fastsegformer_e")(torch.rand(1, 3, 256, 256))


def test_sides_must_be_multiples_of_32(build):
    with pytest.raises(ConfigError, match=r"multiples of 32, got 200×224: resize or pad to 224×224"):
        build("fastsegformer_p")(torch.rand(1, 3, 200, 224))


def test_unknown_options_fail_naming_them():
    with pytest.raises(ConfigError, match="model 'fastsegformer_p' has no option 'depth'"):
        create_model("fastsegformer_p", num_classes=4, depth=3)
    with pytest.raises(ConfigError, match="pyramid='aspp' is not one of msp, ppm"):
        create_model("fastsegformer_e", num_classes=4, pyramid="aspp")
    with pytest.raises(ConfigError, match="model 'fastsegformer_p' fixes 'backbone' itself"):
        create_model("fastsegformer_p", num_classes=4, backbone="efficientformerv2_s0")


def test_pretrained_backbone_comes_from_the_hub_cache(hf_cache):
    """timm's own hub mechanism: offline with nothing cached fails in one line naming the hub id and the local
    alternative; with the file in the cache it loads, and the model says where its backbone came from."""
    with pytest.raises(WeightsError, match=r"Hub 'timm/poolformer_s12.sail_in1k' .*backbone_weights=FILE"):
        create_model("fastsegformer_p", num_classes=4, pretrained=True)
    imagenet = timm.create_model("poolformer_s12", pretrained=False)
    hf_cache("timm/poolformer_s12.sail_in1k", "model.safetensors", imagenet.state_dict())
    model = create_model("fastsegformer_p", num_classes=4, pretrained=True)
    assert torch.equal(model.backbone.body.stages_3.blocks[1].mlp.fc2.weight, imagenet.stages[3].blocks[1].mlp.fc2.weight)
    assert model.backbone_loaded and model.backbone_source == "hf-hub:timm/poolformer_s12.sail_in1k"
    assert not create_model("fastsegformer_p", num_classes=4).backbone_loaded


def test_freeze_and_unfreeze_backbone(build):
    model = create_model("fastsegformer_e", num_classes=4)
    model.freeze_backbone()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("backbone."))
    assert any(n.startswith("backbone.out_norms.") for n, _ in model.named_parameters())  # norms count as backbone
    model.unfreeze_backbone()
    assert all(p.requires_grad for p in model.parameters())


def test_reference_init_is_applied(build):
    """weights_init: convs N(0, 0.02), BatchNorm weight N(1, 0.02) and bias 0, on the whole model."""
    model = build("fastsegformer_p")
    conv = model.decoder.neck.stages[0][0].expand.conv.weight
    assert conv.std().item() == pytest.approx(0.02, rel=0.05)
    bn = model.decoder.fusion.high_proj.bn
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.01) and bn.bias.abs().max() == 0
    assert model.backbone.body.stem.conv.weight.std().item() == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize("arch, fvcore_gflops", [("fastsegformer_p", 2.693), ("fastsegformer_e", 0.793)])
def test_fvcore_gflops_at_224(build, arch, fvcore_gflops):
    flops = FlopCountAnalysis(build(arch), torch.zeros(1, 3, 224, 224))
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    assert flops.total() / 1e9 == pytest.approx(fvcore_gflops, rel=0.01)


# ---- the reference repository's state dicts (spec §8) ----

P_REFERENCE_SAMPLES = {
    "cnn1.0.weight": (32, 3, 3, 3), "cnn1.1.num_batches_tracked": (),
    "cnn2.conv.0.weight": (32, 1, 3, 3), "cnn2.conv.3.weight": (32, 32, 1, 1), "cnn2.conv.4.running_var": (32,),
    "cnn_up.1.weight": (4, 32, 1, 1), "cnn_up.1.bias": (4,),
    "common_backbone.patch_embed.proj.weight": (64, 3, 7, 7), "common_backbone.patch_embed.proj.bias": (64,),
    "common_backbone.network.0.1.layer_scale_1": (64,), "common_backbone.network.4.5.norm2.bias": (320,),
    "common_backbone.network.6.1.mlp.fc1.weight": (2048, 512, 1, 1),
    "common_backbone.network.2.0.mlp.fc2.weight": (128, 512, 1, 1),
    "common_backbone.network.1.proj.weight": (128, 64, 3, 3), "common_backbone.network.5.proj.bias": (512,),
    "common_backbone.norm0.weight": (64,), "common_backbone.norm6.bias": (512,),
    "convert_channel.conv.0.weight": (256, 512, 1, 1), "convert_channel.conv.1.running_mean": (256,),
    "global_feature.bottleneck1.1.block.0.conv.0.weight": (768, 256, 1, 1),
    "global_feature.bottleneck1.0.block.1.conv.0.weight": (768, 1, 3, 3),
    "global_feature.bottleneck1.1.block.2.weight": (256, 768, 1, 1),
    "global_feature.bottleneck1.0.block.3.bias": (256,),
    "global_feature.ppm.conv1.conv.0.weight": (64, 256, 1, 1),
    "global_feature.ppm.conv4.conv.0.weight": (64, 256, 7, 7),
    "global_feature.ppm.conv8.conv.0.weight": (64, 64, 1, 1), "global_feature.ppm.out.conv.0.weight": (512, 512, 1, 1),
    "FFM.dwconv.conv.0.weight": (512, 1, 3, 3), "FFM.conv_lower_res.0.bias": (512,),
    "FFM.conv_higher_res.0.weight": (512, 128, 1, 1), "FFM.conv_higher_res.1.weight": (512,),
    "classify.dsconv2.conv.3.weight": (512, 512, 1, 1), "classify.conv.1.weight": (32, 512, 1, 1),
    "classify.conv.1.bias": (32,),
}
E_REFERENCE_SAMPLES = {
    "common_backbone.patch_embed.0.weight": (16, 3, 3, 3), "common_backbone.patch_embed.4.running_mean": (32,),
    "common_backbone.network.0.1.mlp.mid_norm.weight": (128,), "common_backbone.network.0.0.layer_scale_2": (32, 1, 1),
    "common_backbone.network.1.proj.weight": (48, 32, 3, 3), "common_backbone.network.3.norm.bias": (96,),
    "common_backbone.network.4.4.token_mixer.stride_conv.0.weight": (96, 1, 3, 3),
    "common_backbone.network.4.5.token_mixer.attention_biases": (8, 49),
    "common_backbone.network.4.4.token_mixer.attention_bias_idxs": (49, 49),
    "common_backbone.network.6.3.token_mixer.v.0.weight": (1024, 176, 1, 1),
    "common_backbone.network.6.2.token_mixer.proj.1.weight": (176, 1024, 1, 1),
    "common_backbone.network.6.2.layer_scale_1": (176, 1, 1),
    "common_backbone.network.5.conv.weight": (176, 96, 3, 3), "common_backbone.network.5.bn.running_var": (176,),
    "common_backbone.network.5.attn.q.local.0.weight": (96, 1, 3, 3),
    "common_backbone.network.5.attn.q.proj.1.weight": (128,),
    "common_backbone.network.5.attn.attention_biases": (8, 196),
    "common_backbone.network.5.attn.attention_bias_idxs": (49, 196),
    "common_backbone.norm4.running_mean": (96,),
    "convert_channel.conv.0.weight": (128, 176, 1, 1),
    "global_feature.bottleneck1.2.block.0.conv.0.weight": (384, 128, 1, 1),
    "global_feature.bottleneck2.0.block.2.weight": (160, 384, 1, 1),
    "global_feature.bottleneck2.2.block.0.conv.0.weight": (480, 160, 1, 1),
    "global_feature.ppm.conv7.conv.0.weight": (40, 40, 1, 1), "global_feature.ppm.out.conv.0.weight": (320, 320, 1, 1),
    "FFM.conv_higher_res.0.weight": (320, 48, 1, 1), "classify.conv.1.weight": (32, 320, 1, 1),
}


def _e_reference_shape(key, t):
    """The reference keeps EfficientFormerV2 layer scales as C×1×1 (PoolFormer's are C, as in timm)."""
    return t.reshape(-1, 1, 1) if key.endswith(("layer_scale_1", "layer_scale_2")) else t


@pytest.mark.parametrize("arch, entries, samples, size", [
    ("fastsegformer_p", 298, P_REFERENCE_SAMPLES, 64),
    ("fastsegformer_e", 818, E_REFERENCE_SAMPLES, 224),
])
def test_reference_checkpoint_round_trip(arch, entries, samples, size, randomize, to_reference, tmp_path):
    source = randomize(create_model(arch, num_classes=4))
    reshape = _e_reference_shape if arch == "fastsegformer_e" else (lambda key, t: t)
    reference = to_reference(source, reference_keys(source), reshape)
    assert len(reference) == entries
    assert {k: tuple(reference[k].shape) for k in samples} == samples
    top = list(dict.fromkeys(k.split(".")[0] for k in reference))
    assert sorted(top) == sorted(["cnn1", "cnn2", "cnn_up", "common_backbone", "convert_channel", "global_feature",
                                  "FFM", "classify"])
    path = tmp_path / "reference.pth"
    torch.save(reference, path)

    loaded = load_weights(create_model(arch, num_classes=4), path).eval()
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        assert (loaded(x) - source(x)).abs().max() <= 1e-4


def test_reference_checkpoint_errors_name_the_key(build, to_reference, tmp_path):
    model = build("fastsegformer_p")
    reference = to_reference(model, reference_keys(model))
    del reference["FFM.conv_higher_res.1.running_var"]
    torch.save(reference, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"missing key 'FFM.conv_higher_res.1.running_var'"):
        load_weights(create_model("fastsegformer_p", num_classes=4), tmp_path / "missing.pth")

    reference = to_reference(model, reference_keys(model)) | {"common_backbone.network.7.proj.weight": torch.zeros(1)}
    torch.save(reference, tmp_path / "unexpected.pth")
    with pytest.raises(WeightsError, match=r"'common_backbone.network.7.proj.weight' has no counterpart"):
        load_weights(create_model("fastsegformer_p", num_classes=4), tmp_path / "unexpected.pth")


def test_segkd_layout_state_dict_passes_through(build, randomize, tmp_path):
    source = randomize(create_model("fastsegformer_p", num_classes=4, pyramid="ppm", detail_branch=False))
    torch.save({"state_dict": source.state_dict()}, tmp_path / "segkd.pth")
    loaded = load_weights(create_model("fastsegformer_p", num_classes=4, pyramid="ppm", detail_branch=False),
                          tmp_path / "segkd.pth")
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in loaded.state_dict().items())


# ---- backbone_weights: local ImageNet files ----

def test_backbone_weights_timm_layout(tmp_path):
    imagenet = timm.create_model("poolformer_s12", pretrained=False)  # classifier model, timm's names
    torch.save(imagenet.state_dict(), tmp_path / "poolformer_s12.pth")
    model = create_model("fastsegformer_p", num_classes=4, backbone_weights=str(tmp_path / "poolformer_s12.pth"))
    body = model.backbone.body
    assert torch.equal(body.stages_2.blocks[5].mlp.fc1.weight, imagenet.stages[2].blocks[5].mlp.fc1.weight)
    assert torch.equal(model.backbone.body.stem.conv.weight, imagenet.stem.conv.weight)
    assert model.decoder.neck.reduce.conv.weight.std().item() == pytest.approx(0.02, rel=0.05)  # init kept elsewhere


def test_backbone_weights_original_layout(randomize, tmp_path):
    """snap-research's ImageNet file: `network.*` names, C×1×1 layer scales, a classifier to skip."""
    donor = randomize(create_model("fastsegformer_e", num_classes=4))
    weights = donor.backbone.state_dict()
    original = {
        name: _e_reference_shape(name, weights[key])
        for key, name in donor.backbone.original_keys().items() if key.startswith("body.") and key in weights
    }
    original |= {"norm.weight": torch.ones(176), "head.weight": torch.zeros(9, 176), "dist_head.bias": torch.zeros(9)}
    torch.save({"model": original}, tmp_path / "eformer_s0_450.pth")
    model = create_model("fastsegformer_e", num_classes=4, backbone_weights=str(tmp_path / "eformer_s0_450.pth"))
    ours, theirs = model.backbone.body.state_dict(), donor.backbone.body.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.items())
    assert not torch.equal(model.backbone.out_norms[3].running_var, donor.backbone.out_norms[3].running_var)

    del original["network.6.3.mlp.fc2.weight"]
    torch.save(original, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match=r"partial.pth: no weights for efficientformerv2_s0 key 'network.6.3.mlp"):
        create_model("fastsegformer_e", num_classes=4, backbone_weights=str(tmp_path / "partial.pth"))
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match=r"other.pth: not a checkpoint of efficientformerv2_s0"):
        create_model("fastsegformer_e", num_classes=4, backbone_weights=str(tmp_path / "other.pth"))
