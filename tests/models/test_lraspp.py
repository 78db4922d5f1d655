"""MobileNetV3 + LR-ASPP (fastseg): parameter counts, shapes and taps at two sizes, the attention pool, fastseg's
checkpoint layout, parity with the fastseg package (when installed), timm hub weights, presets."""

import importlib.util

import pytest
import timm
import torch

from segkd.config import load_config
from segkd.data.synthetic import generate_oranges
from segkd.engine.trainer import Trainer
from segkd.errors import ConfigError, WeightsError
from segkd.models import build_model, create_model, load_checkpoint, load_weights
from segkd.models.lraspp import LiteRASPP, reference_keys

LARGE, SMALL = "mobilev3_large_lraspp", "mobilev3_small_lraspp"


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch, num_filters, use_aspp, expected", [
    (LARGE, 256, False, 3_693_379), (LARGE, 128, False, 3_284_547),
    (SMALL, 256, False, 1_451_315), (SMALL, 128, False, 1_140_787), (SMALL, 64, False, 1_022_387),
    (LARGE, 128, True, 3_875_395), (SMALL, 128, True, 1_633_331),  # spec §5 (fastseg's own counts)
])
def test_parameter_counts(arch, num_filters, use_aspp, expected):
    with torch.device("meta"):
        model = create_model(arch, num_classes=19, num_filters=num_filters, use_aspp=use_aspp)
    assert n_params(model) == expected


# stage widths (s2, s4, final) of each trunk: fastseg's get_trunk
WIDTHS = {LARGE: (16, 24, 960), SMALL: (16, 16, 576)}


@pytest.mark.parametrize("arch", [LARGE, SMALL])
@pytest.mark.parametrize("h, w", [(128, 160), (400, 408)])  # below fastseg's ~385 px floor, and above it
def test_shapes_and_taps_from_the_slots(build, arch, h, w):
    model = build(arch, num_filters=64)
    with torch.no_grad():
        logits, taps = model.forward_taps(torch.randn(1, 3, h, w))
    s2, s4, final = WIDTHS[arch]
    assert {k: tuple(v.shape[1:]) for k, v in taps.items()} == {
        "stage1": (s2, h // 2, w // 2), "stage2": (s4, h // 4, w // 4), "stage3": (final, h // 8, w // 8),
        "aspp": (64, h // 8, w // 8), "up4": (64, h // 4, w // 4), "fusion": (64, h // 2, w // 2),
        "logits": (4, h // 2, w // 2),
    }
    assert logits.shape == (1, 4, h, w) and torch.isfinite(logits).all()
    assert model.size_divisor == 8 and model.encoder_reductions == [2, 4, 8]


@pytest.mark.parametrize("hw, grid", [((128, 256), (5, 11)), ((64, 128), (1, 4)), ((16, 20), (1, 1)), ((48, 60), (1, 1))])
def test_attention_pool_is_fastsegs_then_clipped(hw, grid):
    """AvgPool 49 / (16, 20) on the stride-8 map (1024×2048 -> 5×11, 512×1024 -> 1×4); smaller maps: whole side."""
    aspp = LiteRASPP(3, 2).eval()
    seen = []
    aspp.attention.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        out = aspp(x)
    assert seen == [grid] and out.shape == (1, 2, *hw)
    if hw == (16, 20):  # a global pool: the gate is one value per channel
        gate = torch.sigmoid(aspp.attention(x.mean((2, 3), keepdim=True)))
        assert torch.allclose(out, aspp.branch(x) * gate, atol=1e-6)


def test_trunk_is_dilated_like_fastseg(build):
    blocks = build(LARGE).backbone.body.blocks
    assert blocks[3][0].conv_dw.stride == (1, 1) and blocks[3][0].conv_dw.dilation == (2, 2)
    assert blocks[3][0].conv_dw.padding == (2, 2) and type(blocks[3][0].conv_dw) is torch.nn.Conv2d
    assert blocks[4][1].conv_dw.dilation == (2, 2) and blocks[5][2].conv_dw.dilation == (4, 4)
    assert blocks[5][0].conv_dw.padding == (8, 8) and blocks[6][0].conv.dilation == (4, 4)
    assert blocks[2][0].conv_dw.stride == (2, 2) and blocks[2][0].conv_dw.dilation == (1, 1)


# ---------------------------------------------------------------- fastseg's checkpoint layout

FASTSEG_SAMPLES = {  # key -> shape, read off fastseg's LRASPP / MobileNetV3_Large (F=128, 19 classes)
    "trunk.early.0.weight": (16, 3, 3, 3), "trunk.early.1.running_var": (16,),
    "trunk.block0.0.conv_dw.weight": (16, 1, 3, 3), "trunk.block0.0.conv_pw.weight": (16, 16, 1, 1),
    "trunk.block2.0.se.conv_reduce.weight": (24, 72, 1, 1), "trunk.block2.0.se.conv_expand.bias": (72,),
    "trunk.block3.0.conv_dw.weight": (240, 1, 3, 3), "trunk.block5.2.conv_pwl.weight": (160, 960, 1, 1),
    "trunk.block6.0.conv.weight": (960, 160, 1, 1), "trunk.block6.0.bn1.num_batches_tracked": (),
    "aspp_conv1.0.weight": (128, 960, 1, 1), "aspp_conv1.1.running_mean": (128,), "aspp_conv2.1.weight": (128, 960, 1, 1),
    "convs2.weight": (32, 16, 1, 1), "convs4.weight": (64, 24, 1, 1), "conv_up1.bias": (128,),
    "conv_up2.conv.weight": (128, 192, 1, 1), "conv_up3.bn.weight": (128,), "last.weight": (19, 128, 1, 1),
}


def fastseg_file(model, path):
    """`model`'s weights as fastseg saves them: {'num_classes', 'state_dict': {'module.<fastseg key>': ...}}."""
    state = model.state_dict()
    torch.save({"num_classes": 19, "state_dict": {f"module.{ref}": state[ours] for ours, ref in reference_keys(model).items()}},
               path)
    return path


def test_fastseg_key_layout(randomize, tmp_path):
    donor = randomize(create_model(LARGE))
    keys = reference_keys(donor)
    shapes = {ref: tuple(donor.state_dict()[ours].shape) for ours, ref in keys.items()}
    assert {k: shapes[k] for k in FASTSEG_SAMPLES} == FASTSEG_SAMPLES
    assert len(set(keys.values())) == len(keys) == len(donor.state_dict())

    model = load_weights(create_model(LARGE), fastseg_file(donor, tmp_path / "mobilev3large-lraspp-f128.pt")).eval()
    assert all(torch.equal(v, donor.state_dict()[k]) for k, v in model.state_dict().items())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(model(x), donor(x))


def test_fastseg_aspp_layout_and_bad_files(tmp_path):
    donor = create_model(SMALL, num_filters=64, use_aspp=True)
    keys = set(reference_keys(donor).values())
    assert {"aspp_conv2.0.weight", "aspp_conv3.1.bias", "aspp_conv3.2.running_var", "aspp_pool.1.weight",
            "aspp_pool.2.bias"} <= keys
    path = fastseg_file(donor, tmp_path / "aspp.pt")
    load_weights(create_model(SMALL, num_filters=64, use_aspp=True), path)

    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["module.aspp_conv9.weight"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "extra.pt")
    with pytest.raises(WeightsError, match=r"key 'aspp_conv9.weight' has no counterpart"):
        load_weights(create_model(SMALL, num_filters=64, use_aspp=True), tmp_path / "extra.pt")
    del ckpt["state_dict"]["module.aspp_conv9.weight"], ckpt["state_dict"]["module.last.bias"]
    torch.save(ckpt, tmp_path / "partial.pt")
    with pytest.raises(WeightsError, match=r"missing key 'last.bias'"):
        load_weights(create_model(SMALL, num_filters=64, use_aspp=True), tmp_path / "partial.pt")
    with pytest.raises(WeightsError, match=r"'last.weight' has shape \(19, 64, 1, 1\), the model expects \(4, 64, 1, 1\)"):
        load_weights(create_model(SMALL, num_classes=4, num_filters=64, use_aspp=True), path)


@pytest.mark.skipif(importlib.util.find_spec("fastseg") is None or importlib.util.find_spec("geffnet") is None,
                    reason="the fastseg and geffnet packages are not installed")
@pytest.mark.parametrize("arch, num_filters, hw", [(LARGE, 128, (512, 1024)), (SMALL, 64, (400, 400))])
def test_parity_with_the_fastseg_package(tmp_path, monkeypatch, arch, num_filters, hw):
    """fastseg's own model (random weights, random BN statistics) saved as fastseg saves it, loaded with
    load_weights: the same logits within 1e-4."""
    import fastseg
    import fastseg.model.utils as fastseg_utils
    from fastseg.model import mobilenetv3

    for name in ("MobileNetV3_Large", "MobileNetV3_Small"):  # fastseg always asks geffnet for ImageNet weights
        monkeypatch.setattr(fastseg_utils, name, lambda pretrained, cls=getattr(mobilenetv3, name): cls(pretrained=False))
    torch.manual_seed(0)
    ref = (fastseg.MobileV3Large if arch == LARGE else fastseg.MobileV3Small)(19, num_filters=num_filters)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
    ref.eval()
    torch.save({"num_classes": 19, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}},
               tmp_path / "fastseg.pt")
    ours = load_weights(create_model(arch, num_filters=num_filters), tmp_path / "fastseg.pt").eval()
    assert set(reference_keys(ours).values()) == set(ref.state_dict())
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max() <= 1e-4


# ---------------------------------------------------------------- options, ImageNet trunk, presets

def test_options_are_checked():
    with pytest.raises(ConfigError, match=r"has no option 'depth' \(options: num_classes, num_filters, use_aspp\)"):
        create_model(LARGE, depth=3)
    with pytest.raises(ConfigError, match=r"fixes 'trunk' itself"):
        create_model(SMALL, trunk="tf_mobilenetv3_large_100")


def test_pretrained_trunk_from_the_hub_cache(hf_cache):
    with pytest.raises(WeightsError, match=r"Hub 'timm/tf_mobilenetv3_small_100.in1k' .*backbone_weights=FILE"):
        create_model(SMALL, pretrained=True)
    imagenet = timm.create_model("tf_mobilenetv3_small_100", pretrained=False)
    hf_cache("timm/tf_mobilenetv3_small_100.in1k", "model.safetensors", imagenet.state_dict())
    model = create_model(SMALL, pretrained=True)
    assert model.backbone_source == "hf-hub:timm/tf_mobilenetv3_small_100.in1k"
    assert torch.equal(model.backbone.body.blocks[4][1].conv_dw.weight, imagenet.blocks[4][1].conv_dw.weight)
    assert model.backbone.body.blocks[4][0].conv_dw.dilation == (4, 4)  # still the dilated trunk


@pytest.mark.parametrize("preset, arch, params", [
    ("mobilev3-large-lraspp", LARGE, 3_284_547), ("mobilev3-small-lraspp", SMALL, 1_140_787),
])
def test_presets_build_fastsegs_models(preset, arch, params):
    cfg = load_config(preset)
    assert cfg.model.arch == arch and cfg.model.options == {"num_filters": 128, "use_aspp": False}
    with torch.device("meta"):
        model = build_model({"arch": arch, "num_classes": cfg.model.num_classes, "options": cfg.model.options})
    assert n_params(model) == params


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return generate_oranges(tmp_path_factory.mktemp("demo") / "oranges", n_images=6, size=64)


@pytest.mark.parametrize("preset", ["mobilev3-large-lraspp", "mobilev3-small-lraspp"])
def test_preset_trains_one_tiny_epoch_on_the_demo_data(preset, demo_data, tmp_path):
    cfg = load_config(preset, [
        f"data.root={demo_data}", "data.format=voc", "data.classes=[]", "data.palette=null", "model.num_classes=4",
        "data.input_size=64", "augment=[]", "train.epochs=1", "train.batch_size=2", "train.amp=false",
        "train.device=cpu", "data.workers=0", f"project={tmp_path}", "name=t",
    ])
    Trainer(cfg).train()
    run = tmp_path / "train" / "t"
    rows = (run / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 2 and (run / "weights" / "last.pt").is_file()
    model = load_checkpoint(run / "weights" / "last.pt")
    assert model.arch == preset.replace("-", "_") and model.head.out_channels == 4
