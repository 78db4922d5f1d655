"""EfficientDet-seg D0-D7: the repository's exact D4 size, shapes and taps, both heads and fusions, the input-size
check, the repository's checkpoints and backbone files (written here under its key names), and the presets."""

import re

import pytest
import torch

from segkd.config import config_to_dict, load_config
from segkd.data.synthetic import generate_oranges
from segkd.engine.trainer import train
from segkd.errors import ConfigError, WeightsError
from segkd.models import build_model, create_model, list_models, load_weights
from segkd.models.efficientdet_seg import reference_keys

VARIANTS = [f"efficientdet_d{d}_seg" for d in range(8)]
D0_TAPS_512 = {  # name -> (channels, height); B0 stages: 24/40/112 channels at strides 4/8/16, BiFPN width 64
    "stage1": (24, 128), "stage2": (40, 64), "stage3": (112, 32),
    "p2": (64, 128), "p3": (64, 64), "p4": (64, 32), "p5": (64, 16), "p6": (64, 8),
    "fusion": (64, 512), "logits": (4, 512),
}
UNUSED_HEAD = {  # the repository's EfficientNet-B4 classification head, kept in its checkpoints (spec §1)
    "backbone.conv_head.weight": (1792, 448, 1, 1), "backbone.bn1.weight": (1792,), "backbone.bn1.bias": (1792,),
    "backbone.bn1.running_mean": (1792,), "backbone.bn1.running_var": (1792,), "backbone.bn1.num_batches_tracked": (),
    "backbone.classifier.weight": (1000, 1792), "backbone.classifier.bias": (1000,),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: one torch thread (threads only add contention on a shared 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_variant_is_registered():
    assert list_models("efficientdet_d*_seg") == VARIANTS


def test_d4_parameter_count_is_the_repositorys():
    """The repository's modules without its unused classification head (spec §6): 17,723,613 with 21 classes."""
    model = create_model("efficientdet_d4_seg", num_classes=21)
    assert sum(p.numel() for p in model.parameters()) == 17_723_613
    assert sum(p.numel() for p in model.decoder.layers.parameters()) == 669_952  # BiFPN × 3 with input convs
    assert sum(p.numel() for p in model.decoder.fusion.parameters()) == 131_840  # the two transposed convs
    assert sum(p.numel() for p in model.head.parameters()) == 179_605


@pytest.mark.parametrize("size", [(512, 512), (384, 640)])
def test_d0_taps(size):
    """Shapes at full size on the meta device (no compute); `test_heads_and_fusions_run_and_train` computes."""
    h, w = size
    model = create_model("efficientdet_d0_seg", num_classes=4).eval().to("meta")
    logits, taps = model.forward_taps(torch.empty(1, 3, h, w, device="meta"))
    assert list(taps) == list(D0_TAPS_512)
    scale = h / 512
    assert {k: (v.shape[1], v.shape[2]) for k, v in taps.items()} == {
        k: (c, int(s * scale)) for k, (c, s) in D0_TAPS_512.items()}
    assert all(v.shape[3] * h == v.shape[2] * w for v in taps.values())
    assert logits.shape == (1, 4, h, w)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("head", ["p2", "fpn"])
def test_heads_and_fusions_run_and_train(head, weighted):
    model = create_model("efficientdet_d0_seg", num_classes=4, head=head, weighted_fusion=weighted)
    x = torch.rand(2, 3, 64, 128)
    logits, taps = model.forward_taps(x)
    assert logits.shape == (2, 4, 64, 128)
    assert taps["fusion"].shape[1:] == ((64, 64, 128) if head == "p2" else (128 + 64, 16, 32))
    assert taps["logits"].shape[-2:] == ((64, 128) if head == "p2" else (32, 64))
    logits.mean().backward()
    node = model.decoder.layers[1].p3_out
    assert (node.weights is not None) == weighted
    if weighted:
        assert node.weights.shape == (3,) and node.weights.grad.abs().sum() > 0


def test_sides_must_be_multiples_of_64(build):
    with pytest.raises(ConfigError, match=r"multiples of 64, got 200×256: resize or pad to 256×256"):
        build("efficientdet_d0_seg")(torch.rand(1, 3, 200, 256))


def test_unknown_options_fail_naming_them():
    with pytest.raises(ConfigError, match="head='aspp' is not one of p2, fpn"):
        create_model("efficientdet_d0_seg", num_classes=4, head="aspp")
    with pytest.raises(ConfigError, match="backbone='efficientnet_b8' is not one of efficientnet_b0, "):
        create_model("efficientdet_d0_seg", num_classes=4, backbone="efficientnet_b8")


# -- the repository's checkpoints ---------------------------------------------------------------------------
def repository_checkpoint(model, to_reference, prefix="module."):
    """`model`'s weights as the repository's DataParallel run saves them, with the unused classifier head."""
    state = to_reference(model, reference_keys(model))
    state |= {k: torch.randn(shape) if shape else torch.tensor(0) for k, shape in UNUSED_HEAD.items()}
    return {prefix + k: v for k, v in state.items()}


def test_reference_key_names_and_shapes(build):
    """Spot checks against the repository's `EfficientDetSegmentation(num_classes=21).state_dict()` (861 keys)."""
    model = create_model("efficientdet_d4_seg", num_classes=21)
    keys = reference_keys(model)
    shapes = {ref: tuple(model.state_dict()[ours].shape) for ours, ref in keys.items()}
    assert len(keys) + len(UNUSED_HEAD) == 861
    assert shapes["backbone.conv_stem.weight"] == (48, 3, 3, 3)
    assert shapes["backbone.bn0.running_var"] == (48,)
    assert shapes["backbone.blocks.0.dw_conv.weight"] == (48, 1, 3, 3)
    assert shapes["backbone.blocks.0.pw_projection_conv.weight"] == (24, 48, 1, 1)
    assert shapes["backbone.blocks.2.pw_expand_conv.weight"] == (144, 24, 1, 1)
    assert shapes["backbone.blocks.2.bn0.weight"] == (144,)
    assert shapes["backbone.blocks.2.se_reduce.weight"] == (6, 144, 1, 1)
    assert shapes["backbone.blocks.31.pw_projection_conv.weight"] == (448, 2688, 1, 1)
    assert shapes["feature_network.0.p3_input_conv.weight"] == (128, 32, 1, 1)
    assert shapes["feature_network.0.p4_bn_2.running_mean"] == (128,)
    assert shapes["feature_network.0.p5_input_conv_1.weight"] == (128, 160, 1, 1)
    assert shapes["feature_network.0.p6_input_conv.weight"] == (128, 160, 3, 3)
    assert shapes["feature_network.2.p7_output_conv.pw_conv.bias"] == (128,)
    assert shapes["feature_network.1.p6_hidden_conv.dw_conv.weight"] == (128, 1, 3, 3)
    assert shapes["expand_conv.3.weight"] == (128, 128, 2, 2)
    assert shapes["expand_conv.4.num_batches_tracked"] == ()
    assert shapes["classifier.head_conv.0.pw_conv.weight"] == (256, 128, 1, 1)
    assert shapes["classifier.head_bn.2.running_var"] == (256,)
    assert shapes["classifier.classifier.pw_conv.weight"] == (21, 256, 1, 1)
    fpn = reference_keys(create_model("efficientdet_d0_seg", num_classes=21, head="fpn"))
    assert {fpn["decoder.fusion.ups.3.conv.weight"], fpn["decoder.fusion.ups.0.bn.bias"], fpn["head.weight"]} == {
        "classifier.head_fpn.3.weight", "classifier.head_bn.0.bias", "classifier.classifier.weight"}


@pytest.mark.parametrize("arch, options", [("efficientdet_d4_seg", {}), ("efficientdet_d0_seg", {"head": "fpn"})])
@pytest.mark.parametrize("prefix", ["module.", ""])
def test_repository_checkpoint_loads_and_computes_the_same(tmp_path, randomize, to_reference, arch, options, prefix):
    source = randomize(create_model(arch, num_classes=21, **options))
    path = tmp_path / "model_2.pth"
    torch.save(repository_checkpoint(source, to_reference, prefix), path)
    model = create_model(arch, num_classes=21, **options)
    with pytest.warns(UserWarning, match=r"dropped 8 keys of the backbone's unused classification head"):
        load_weights(model, path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected, got = source(x), model.eval()(x)
    assert expected.std() > 0.01
    assert torch.equal(got, expected)


def test_repository_checkpoint_with_a_foreign_key_fails_naming_it(tmp_path, to_reference, build):
    model = build("efficientdet_d0_seg")
    state = repository_checkpoint(model, to_reference, prefix="")
    state["feature_network.0.p8_output_conv.pw_conv.bias"] = torch.zeros(64)
    torch.save(state, tmp_path / "x.pth")
    foreign = "'feature_network.0.p8_output_conv.pw_conv.bias'"
    with pytest.warns(UserWarning), pytest.raises(WeightsError, match=foreign):
        load_weights(create_model("efficientdet_d0_seg", num_classes=4), tmp_path / "x.pth")
    weighted = create_model("efficientdet_d0_seg", num_classes=4, weighted_fusion=True)
    with pytest.warns(UserWarning), pytest.raises(WeightsError, match="no fusion weights: build with weighted_fusion"):
        load_weights(weighted, tmp_path / "x.pth")


def to_lukemelas(key: str) -> str:
    """The repository's EfficientNet key -> lukemelas/EfficientNet-PyTorch's
    (`blocks.3.dw_conv.weight` -> `_blocks.3._depthwise_conv.weight`)."""
    key = {"classifier.weight": "_fc.weight", "classifier.bias": "_fc.bias"}.get(key, key)
    key = key.replace("pw_expand_conv", "expand_conv").replace("dw_conv", "depthwise_conv")
    key = key.replace("pw_projection_conv", "project_conv")
    return ".".join(p if p.isdigit() or p.startswith("_") or p in ("weight", "bias") or p.startswith(("running", "num"))
                    else "_" + p for p in key.split("."))


@pytest.mark.parametrize("layout", ["repository", "lukemelas"])
def test_backbone_files_load_as_backbone_weights(tmp_path, randomize, to_reference, layout):
    """The repository's `efficientnet_b0.pth` (its EfficientNet's own state dict, classifier included) and the same
    weights under lukemelas' names."""
    source = randomize(create_model("efficientdet_d0_seg", num_classes=4))
    names = {k: v.removeprefix("backbone.") for k, v in reference_keys(source).items() if k.startswith("backbone.")}
    state = to_reference(source, names)
    state |= {k.removeprefix("backbone."): torch.randn(1280 if "head" in k else 1000, *s[1:])
              for k, s in UNUSED_HEAD.items() if s and "bn1" not in k}
    if layout == "lukemelas":
        state = {to_lukemelas(k): v for k, v in state.items()}
        assert "_blocks.1._depthwise_conv.weight" in state and "_fc.weight" in state and "_bn0.weight" in state
    torch.save(state, tmp_path / "efficientnet_b0.pth")
    model = create_model("efficientdet_d0_seg", num_classes=4, backbone_weights=str(tmp_path / "efficientnet_b0.pth"))
    assert model.backbone_source == str(tmp_path / "efficientnet_b0.pth")
    own, theirs = model.backbone.state_dict(), source.backbone.state_dict()
    assert all(torch.equal(own[k], theirs[k]) for k in own)


def test_backbone_file_missing_a_block_fails_naming_it(tmp_path, to_reference, build):
    source = build("efficientdet_d0_seg")
    names = {k: v.removeprefix("backbone.") for k, v in reference_keys(source).items() if k.startswith("backbone.")}
    state = to_reference(source, names)
    del state["blocks.15.pw_projection_conv.weight"]
    torch.save(state, tmp_path / "efficientnet_b0.pth")
    missing = r"no weights for tf_efficientnet_b0 key 'blocks.15.pw_projection_conv.weight'"
    with pytest.raises(WeightsError, match=missing):
        create_model("efficientdet_d0_seg", num_classes=4, backbone_weights=str(tmp_path / "efficientnet_b0.pth"))


# -- presets on the demo data -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return generate_oranges(tmp_path_factory.mktemp("demo") / "oranges", 5, 64)


def tiny_config(preset, root, runs):
    """`preset` on the demo oranges at 64×64 (its resize op too), 1 epoch of batch 2 on the CPU."""
    return load_config(preset, {
        "data.root": str(root), "model.num_classes": 4, "data.input_size": 64, "data.workers": 0,
        "train.epochs": 1, "train.batch_size": 2, "train.device": "cpu", "project": str(runs), "exist_ok": True,
        "augment": [{"op": "resize", "size": 64}, *load_config(preset).augment[1:]],
    })


@pytest.mark.parametrize("preset", ["efficientdet-d0-seg", "efficientdet-d4-seg"])
def test_preset_trains_one_epoch_on_the_demo_data(tmp_path, demo_root, preset):
    """The repository's recipe (AdamW, exponential lr, accumulate 2, clip 0.1, CE + soft-IoU) runs end to end."""
    cfg = tiny_config(preset, demo_root, tmp_path)
    assert (cfg.train.optimizer, cfg.train.accumulate, cfg.train.clip_grad) == ("adamw", 2, 0.1)
    assert [t["name"] for t in cfg.loss] == ["ce", "soft_iou"]
    summary = train(cfg)
    assert summary["epochs"] == 1 and set(summary["final"]) >= {"train/ce", "train/soft_iou", "val/mIoU"}
    assert torch.isfinite(torch.tensor(summary["final"]["train/loss"]))
    model = create_model(cfg.model.arch, num_classes=4)
    load_weights(model, summary["best"])  # a segkd checkpoint of the family loads back


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_preset_builds_and_runs_forward(tmp_path, demo_root, variant):
    """The other presets are too slow for a CPU epoch in CI: each builds from its resolved config and runs."""
    preset = variant.replace("_", "-")
    cfg = config_to_dict(tiny_config(preset, demo_root, tmp_path))
    model = build_model(cfg["model"])
    assert model.arch == variant and re.fullmatch(r"efficientnet_b\d", cfg["model"]["options"]["backbone"])
    assert model.decoder.layers[0].p2_in.conv.out_channels == cfg["model"]["options"]["bifpn_channels"]
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 4, 64, 64)
