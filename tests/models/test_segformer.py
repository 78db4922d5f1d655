"""SegFormer B0-B5: parameter counts, shapes and taps, Hugging Face parity, foreign key layouts, presets."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file as save_safetensors
from torch import nn

from segkd.config import load_config
from segkd.errors import ConfigError, WeightsError
from segkd.models import build_model, create_model, load_weights

TAP_NAMES = ["stage1", "stage2", "stage3", "stage4", "embed1", "embed2", "embed3", "embed4", "fusion", "logits"]
WIDTHS = {"b0": (32, 64, 160, 256)} | {v: (64, 128, 320, 512) for v in ("b1", "b2", "b3", "b4", "b5")}
DECODER = {"b0": 256, "b1": 256, "b2": 768, "b3": 768, "b4": 768, "b5": 768}
DEPTHS = {"b0": (2, 2, 2, 2), "b2": (3, 4, 6, 3)}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def expected_taps(variant: str, k: int, h: int, w: int) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for i, c in enumerate(WIDTHS[variant]):
        s = 2 ** (i + 2)
        shapes[f"stage{i + 1}"] = shapes[f"embed{i + 1}"] = (1, c, h // s, w // s)
    shapes["fusion"] = (1, DECODER[variant], h // 4, w // 4)
    shapes["logits"] = (1, k, h // 4, w // 4)
    return shapes


@pytest.fixture(scope="module")
def b0() -> nn.Module:
    torch.manual_seed(0)
    return create_model("segformer_b0", num_classes=19).eval()


# ---------------------------------------------------------------- architecture


@pytest.mark.parametrize("variant, k, count", [
    ("b0", 19, 3_719_027),  # transformers SegformerForSemanticSegmentation, B0 config
    ("b0", 3, 3_714_915),  # SEKD spec §1.6 (encoder 3,319,392 + decoder 395,523)
    ("b2", 20, 27_362_004),  # SEKD spec §1.6, README "27.36"
])
def test_parameter_counts(variant, k, count):
    model = create_model(f"segformer_{variant}", num_classes=k)
    assert n_params(model) == count
    if variant == "b0":
        assert n_params(model.backbone) == 3_319_392


@pytest.mark.parametrize("size", [224, 512])
def test_b0_output_and_taps(b0, size):
    with torch.no_grad():
        logits, taps = b0.forward_taps(torch.randn(1, 3, size, size))
    assert logits.shape == (1, 19, size, size)
    assert list(taps) == TAP_NAMES
    assert {k: tuple(v.shape) for k, v in taps.items()} == expected_taps("b0", 19, size, size)


@pytest.mark.parametrize("variant", ["b1", "b2", "b3", "b4", "b5"])
def test_larger_variants_at_64(variant):
    model = create_model(f"segformer_{variant}", num_classes=5).eval()
    with torch.no_grad():
        logits, taps = model.forward_taps(torch.randn(1, 3, 64, 64))
    assert logits.shape == (1, 5, 64, 64)
    assert {k: tuple(v.shape) for k, v in taps.items()} == expected_taps(variant, 5, 64, 64)


def test_non_square_input_and_size_divisor(b0):
    with torch.no_grad():
        assert b0(torch.randn(2, 3, 64, 96)).shape == (2, 19, 64, 96)
    with pytest.raises(ConfigError, match=r"multiples of 32, got 64×80: resize or pad to 64×96"):
        b0(torch.randn(1, 3, 64, 80))


def test_embed_taps_are_patch_embeddings_before_the_blocks(b0):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        _, taps = b0.forward_taps(x)
        pe = b0.backbone.stages[0].patch_embed
        y = pe.proj(x)  # 1×32×16×16
        ref = pe.norm(y.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(y.shape)
    torch.testing.assert_close(taps["embed1"], ref)
    assert not torch.allclose(taps["embed1"], taps["stage1"])


def test_mit_settings_and_init():
    model = create_model("segformer_b2", num_classes=3)
    blocks = [b for s in model.backbone.stages for b in s.blocks]
    assert isinstance(blocks[0].drop_path, nn.Identity)
    assert blocks[-1].drop_path.drop_prob == pytest.approx(0.1)
    assert blocks[-1].norm1.eps == 1e-6 and model.backbone.stages[0].norm.eps == 1e-6
    assert model.backbone.stages[0].patch_embed.norm.eps == 1e-5 and blocks[0].attn.norm.eps == 1e-5
    firsts = [s.blocks[0].attn for s in model.backbone.stages]
    assert [a.sr.stride[0] if a.sr is not None else 1 for a in firsts] == [8, 4, 2, 1]
    assert [a.num_heads for a in firsts] == [1, 2, 5, 8]
    assert blocks[0].mlp.fc1.out_features == 4 * 64
    fc = blocks[5].mlp.fc1.weight
    assert fc.std().item() == pytest.approx(0.02, rel=0.1) and fc.abs().max() <= 2.0
    proj = model.backbone.stages[0].patch_embed.proj.weight  # fan_out = 7·7·64
    assert proj.std().item() == pytest.approx((2 / (7 * 7 * 64)) ** 0.5, rel=0.1)
    assert model.backbone.feature_info[2] == dict(num_chs=320, reduction=16, module="stages.2")


def test_freeze_backbone():
    model = create_model("segformer_b0", num_classes=3)
    model.freeze_backbone()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters()) and model.head.weight.requires_grad
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert model.backbone.stages[0].patch_embed.proj.weight.grad is None
    assert model.decoder.linear_c[0].weight.grad is not None
    model.unfreeze_backbone()
    assert all(p.requires_grad for p in model.parameters())


def test_pretrained_backbone_comes_from_the_hub_cache(hf_cache, b0):
    with pytest.raises(WeightsError, match=r"segformer_b0: no ImageNet MiT weights .*'nvidia/mit-b0'.*backbone_weights"):
        create_model("segformer_b0", pretrained=True)
    hf_cache("nvidia/mit-b0", "model.safetensors", {f"backbone.{k}": v for k, v in b0.backbone.state_dict().items()})
    model = create_model("segformer_b0", pretrained=True)
    assert model.backbone_source == "hf-hub:nvidia/mit-b0"
    assert all(torch.equal(v, b0.backbone.state_dict()[k]) for k, v in model.backbone.state_dict().items())


# ---------------------------------------------------------------- Hugging Face parity and foreign layouts


def hf_segformer(variant: str, k: int = 19):
    """A randomly initialised transformers SegformerForSemanticSegmentation, every tensor perturbed (eval mode)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.SegformerConfig(
        num_labels=k, hidden_sizes=list(WIDTHS[variant]), depths=list(DEPTHS[variant]),
        num_attention_heads=[1, 2, 5, 8], decoder_hidden_size=DECODER[variant],
    )
    torch.manual_seed(1)
    model = transformers.SegformerForSemanticSegmentation(config).eval()
    with torch.no_grad():  # move LN/BN away from 1/0 and give BN real statistics, so a swapped key shows
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
        model.decode_head.batch_norm.running_mean.normal_(0, 0.1)
        model.decode_head.batch_norm.running_var.uniform_(0.5, 2.0)
    return model


def hf_logits(hf, x: torch.Tensor) -> torch.Tensor:
    out = hf(pixel_values=x, output_hidden_states=True)
    return F.interpolate(out.logits, size=x.shape[-2:], mode="bilinear", align_corners=False), out.hidden_states


@pytest.mark.parametrize("variant, size", [("b0", (128, 160)), ("b2", (64, 64))])
def test_hugging_face_parity(tmp_path, variant, size):
    hf = hf_segformer(variant)
    assert n_params(hf) == n_params(create_model(f"segformer_{variant}", num_classes=19))
    path = tmp_path / "hf.bin"
    torch.save(hf.state_dict(), path)
    model = load_weights(create_model(f"segformer_{variant}", num_classes=19), path).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ref, hidden = hf_logits(hf, x)
        logits, taps = model.forward_taps(x)
    assert (logits - ref).abs().max().item() <= 1e-4
    for i, h in enumerate(hidden):
        assert (taps[f"stage{i + 1}"] - h).abs().max().item() <= 1e-4


def test_hugging_face_safetensors_file(tmp_path):
    """The Hub serves `model.safetensors`: it loads like the same state dict saved with torch.save."""
    hf = hf_segformer("b0")
    save_safetensors({k: v.contiguous() for k, v in hf.state_dict().items()}, str(tmp_path / "model.safetensors"))
    model = load_weights(create_model("segformer_b0", num_classes=19), tmp_path / "model.safetensors").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (model(x) - hf_logits(hf, x)[0]).abs().max().item() <= 1e-4


# transformers 4.x names (what the nvidia/segformer-* files on the Hub hold) <- 5.x names
HF4_NAMES = [
    (r"segformer\.stages\.(\d)\.patch_embeddings\.", r"segformer.encoder.patch_embeddings.\1."),
    (r"segformer\.stages\.(\d)\.blocks\.", r"segformer.encoder.block.\1."),
    (r"segformer\.stages\.(\d)\.layer_norm\.", r"segformer.encoder.layer_norm.\1."),
    (r"attention\.q_proj", "attention.self.query"), (r"attention\.k_proj", "attention.self.key"),
    (r"attention\.v_proj", "attention.self.value"), (r"attention\.o_proj", "attention.output.dense"),
    (r"attention\.sequence_reduction\.sequence_reduction", "attention.self.sr"),
    (r"attention\.sequence_reduction\.layer_norm", "attention.self.layer_norm"),
    (r"mlp\.fc1", "mlp.dense1"), (r"mlp\.fc2", "mlp.dense2"),
    (r"layernorm_before", "layer_norm_1"), (r"layernorm_after", "layer_norm_2"),
    (r"decode_head\.linear_projections", "decode_head.linear_c"),
]


def test_hugging_face_4x_layout(tmp_path):
    hf = hf_segformer("b0")
    state = {}
    for key, value in hf.state_dict().items():
        for pattern, repl in HF4_NAMES:
            key = re.sub(pattern, repl, key)
        state[key] = value
    assert "segformer.encoder.block.0.0.attention.self.query.weight" in state
    assert "decode_head.linear_c.0.proj.weight" in state
    torch.save(state, tmp_path / "hf4.bin")
    model = load_weights(create_model("segformer_b0", num_classes=19), tmp_path / "hf4.bin").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (model(x) - hf_logits(hf, x)[0]).abs().max().item() <= 1e-4


def nvlabs_state(model: nn.Module, prefixed: bool) -> dict[str, torch.Tensor]:
    """The model's weights under NVlabs/mmseg names (`prefixed`) or SEKD/TransKD's flat names."""
    rules = [
        (r"^backbone\.stages\.(\d)\.patch_embed\.", lambda m: f"backbone.patch_embed{int(m[1]) + 1}."),
        (r"^backbone\.stages\.(\d)\.blocks\.", lambda m: f"backbone.block{int(m[1]) + 1}."),
        (r"^backbone\.stages\.(\d)\.norm\.", lambda m: f"backbone.norm{int(m[1]) + 1}."),
        (r"\.mlp\.dwconv\.", ".mlp.dwconv.dwconv."),
        (r"^decoder\.linear_c\.(\d)\.", lambda m: f"decode_head.linear_c{int(m[1]) + 1}.proj."),
        (r"^decoder\.linear_fuse\.", "decode_head.linear_fuse."),
        (r"^head\.", "decode_head.linear_pred."),
    ]
    state = {}
    for key, value in model.state_dict().items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        if not prefixed:
            key = re.sub(r"^(backbone|decode_head)\.", "", key)
        state[key] = value
    return state


@pytest.mark.parametrize("prefixed", [True, False], ids=["nvlabs-mmseg", "sekd-flat"])
def test_nvlabs_and_sekd_layouts(tmp_path, b0, prefixed):
    state = nvlabs_state(b0, prefixed)
    assert ("backbone.block1.0.attn.kv.weight" if prefixed else "block1.0.attn.kv.weight") in state
    if prefixed:  # mmseg's unused BaseDecodeHead classifier is dropped
        state |= {
            "decode_head.conv_seg.weight": torch.zeros(19, 256, 1, 1), "decode_head.conv_seg.bias": torch.zeros(19),
        }
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "ref.pth")
    model = load_weights(create_model("segformer_b0", num_classes=19), tmp_path / "ref.pth").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), b0(x))


def test_plain_state_dict_of_segkd_names_loads_unchanged(tmp_path, b0):
    torch.save(b0.state_dict(), tmp_path / "plain.pt")
    model = load_weights(create_model("segformer_b0", num_classes=19), tmp_path / "plain.pt").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), b0(x), rtol=0, atol=0)


def test_foreign_keys_are_named(tmp_path):
    state = hf_segformer("b0").state_dict()
    state["decode_head.aux_head.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "extra.bin")
    with pytest.raises(WeightsError, match=r"extra.bin: unexpected key 'decode_head.aux_head.weight'"):
        load_weights(create_model("segformer_b0", num_classes=19), tmp_path / "extra.bin")
    del state["decode_head.aux_head.weight"], state["segformer.stages.1.blocks.0.attention.v_proj.weight"]
    torch.save(state, tmp_path / "short.bin")
    with pytest.raises(WeightsError, match=r"short.bin: missing key 'backbone.stages.1.blocks.0.attn.kv.weight'"):
        load_weights(create_model("segformer_b0", num_classes=19), tmp_path / "short.bin")
    torch.save(hf_segformer("b0", k=150).state_dict(), tmp_path / "ade.bin")
    with pytest.raises(WeightsError, match=r"'head.weight' has shape \(150, 256, 1, 1\).*different number of classes"):
        load_weights(create_model("segformer_b0", num_classes=19), tmp_path / "ade.bin")


def test_backbone_weights_from_an_imagenet_file(tmp_path, b0):
    state = {k: v for k, v in nvlabs_state(b0, prefixed=False).items() if not k.startswith(("linear_", "head."))}
    state |= {"head.weight": torch.zeros(1000, 256), "head.bias": torch.zeros(1000)}  # ImageNet classifier
    torch.save(state, tmp_path / "mit_b0.pth")
    model = create_model("segformer_b0", num_classes=3, backbone_weights=str(tmp_path / "mit_b0.pth"))
    for key, value in b0.backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value)
    del state["norm1.bias"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(WeightsError, match=r"broken.pth: missing key 'stages.0.norm.bias'"):
        create_model("segformer_b0", num_classes=3, backbone_weights=str(tmp_path / "broken.pth"))


# ---------------------------------------------------------------- presets


@pytest.mark.parametrize("variant", ["b0", "b1", "b2", "b3", "b4", "b5"])
def test_presets(variant):
    cfg = load_config(f"segformer-{variant}")
    assert cfg.model.arch == f"segformer_{variant}" and cfg.model.num_classes == 3
    assert cfg.paper == "SegFormer (Xie et al. 2021) / SEKD (Li et al. 2025)" and cfg.distill is None
    train = cfg.train
    assert (train.optimizer, train.weight_decay, train.batch_size, cfg.data.input_size) == ("adamw", 0.01, 4, 512)
    assert cfg.train.lr == (5e-5 if variant in ("b0", "b1") else 4e-5)


def test_b0_preset_builds_the_sekd_student():
    cfg = load_config("segformer-b0")
    model = build_model({"arch": cfg.model.arch, "num_classes": cfg.model.num_classes, "options": cfg.model.options})
    assert n_params(model) == 3_714_915
