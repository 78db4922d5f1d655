"""PP-MobileSeg-Base/-Tiny: exact sizes, shapes and taps, VIM (property, switch, ONNX graph), PaddleSeg's
`.pdparams` files (restricted unpickler, key mapping), and the shipped presets training on the demo data."""

import os
import pickle
from collections import OrderedDict

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from segkd.config import config_to_dict, load_config
from segkd.data.synthetic import generate_oranges
from segkd.deploy.export import export_onnx
from segkd.deploy.loading import load_model
from segkd.deploy.onnx_model import OnnxModel
from segkd.deploy.verify import parity_inputs, verify_onnx
from segkd.engine.trainer import Trainer
from segkd.errors import ConfigError, WeightsError
from segkd.models import checkpoint_payload, create_model, labels_are_argmax, load_weights
from segkd.models.layers import resize
from segkd.models.pdparams import NAME_TABLE, from_paddle, read_pdparams
from segkd.models.pp_mobileseg import paddle_key, vim_labels

PARAMS = [  # spec §7: the analytic count of PaddleSeg's code
    ("pp_mobileseg_base", 150, 5_943_878), ("pp_mobileseg_tiny", 150, 1_492_298),
    ("pp_mobileseg_base", 19, 5_910_211), ("pp_mobileseg_tiny", 19, 1_458_631),
]
TAPS = {  # (channels, stride) per tap, spec §6
    "pp_mobileseg_base": {"stage1": (32, 4), "stage2": (64, 8), "stage3": (128, 16), "stage4": (192, 32),
                          "fusion": (256, 8), "logits": (150, 8)},
    "pp_mobileseg_tiny": {"stage1": (24, 4), "stage2": (32, 8), "stage3": (64, 16), "stage4": (128, 32),
                          "fusion": (256, 16), "logits": (150, 16)},
}
ARCHS = list(TAPS)


@pytest.fixture(scope="module")
def models():
    cache = {}

    def _get(arch, num_classes=150, **options):
        key = (arch, num_classes, tuple(sorted(options.items())))
        if key not in cache:
            torch.manual_seed(0)
            cache[key] = create_model(arch, num_classes=num_classes, **options).eval()
        return cache[key]

    return _get


@pytest.mark.parametrize("arch, num_classes, params", PARAMS)
def test_parameter_counts_equal_the_reference(models, arch, num_classes, params):
    assert sum(p.numel() for p in models(arch, num_classes).parameters()) == params


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("hw", [(512, 512), (256, 320)])
def test_taps_and_logits(models, arch, hw):
    with torch.no_grad():
        logits, taps = models(arch).forward_taps(torch.randn(1, 3, *hw))
    assert logits.shape == (1, 150, *hw)
    expected = {k: (1, c, hw[0] // s, hw[1] // s) for k, (c, s) in TAPS[arch].items()}
    assert {k: tuple(v.shape) for k, v in taps.items()} == expected
    assert list(taps) == list(expected)


def test_input_size_must_be_a_multiple_of_32(models):
    with pytest.raises(ConfigError, match="multiples of 32.*pad to 64×64"):
        models("pp_mobileseg_tiny")(torch.zeros(1, 3, 48, 48))


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="upsample='nearest' is not one of vim, interpolate"):
        create_model("pp_mobileseg_tiny", num_classes=150, upsample="nearest")
    with pytest.raises(ConfigError, match="fixes 'size'"):
        create_model("pp_mobileseg_tiny", size="base")
    with pytest.raises(ConfigError, match="model.weights=FILE.pdparams"):
        create_model("pp_mobileseg_tiny", pretrained=True)


# -- VIM ------------------------------------------------------------------------------------------------------
def random_low_res_logits(seed: int, k: int = 150, dominant: int = 12) -> torch.Tensor:
    """B×K×h×w logits in which `dominant` classes usually win (about as many as an ADE20K image has); even
    seeds add little noise to the others (full-resolution winners present at low resolution), odd seeds more."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k, 8, 10, generator=gen) * (0.1 if seed % 2 == 0 else 1.0)
    logits[:, torch.randperm(k, generator=gen)[:dominant]] += 3.0 * torch.rand(1, dominant, 8, 10, generator=gen)
    return logits


@pytest.mark.parametrize("seed", range(20))
def test_vim_is_full_argmax_whenever_every_full_resolution_winner_is_present(seed):
    logits = random_low_res_logits(seed)
    size = (32, 44)
    full = resize(logits, size)  # B×K×H×W
    labels = vim_labels(logits, size)
    present = logits.argmax(1).unique()
    assert labels.dtype == torch.int64 and labels.shape == (2, *size)
    # always: the argmax over the present classes only (bilinear resizing works channel by channel)
    assert torch.equal(labels, present[full[:, present].argmax(1)])
    if set(full.argmax(1).unique().tolist()) <= set(present.tolist()):
        assert torch.equal(labels, full.argmax(1))
    else:  # a class that only wins between low-resolution pixels is ruled out, by design
        assert not set(labels.unique().tolist()) - set(present.tolist())


def test_vim_property_holds_on_some_cases_of_each_kind():
    kinds = set()
    for seed in range(20):
        logits = random_low_res_logits(seed)
        full = resize(logits, (32, 44)).argmax(1)
        kinds.add(set(full.unique().tolist()) <= set(logits.argmax(1).unique().tolist()))
    assert kinds == {True, False}  # the test above checked both branches


def test_vim_is_the_label_path_from_30_classes_in_eval_mode(models):
    model = models("pp_mobileseg_tiny")
    x = torch.randn(1, 3, 64, 96)
    assert model.vim_active and not labels_are_argmax(model)
    with torch.no_grad():
        low = model.head_taps(x)["logits"]  # B×K×H/16×W/16
        assert torch.equal(model.predict_labels(x), vim_labels(low, (64, 96)))
        assert torch.equal(model(x), resize(low, (64, 96)))  # forward keeps full logits
    model.train()
    assert not model.vim_active
    model.eval()


@pytest.mark.parametrize("num_classes, options", [(29, {}), (150, {"upsample": "interpolate"})])
def test_vim_is_off_below_30_classes_or_when_asked(models, num_classes, options):
    model = models("pp_mobileseg_tiny", num_classes, **options)
    x = torch.randn(1, 3, 64, 64)
    assert not model.vim_active and labels_are_argmax(model)  # eval keeps TTA and score resizing
    with torch.no_grad():
        assert torch.equal(model.predict_labels(x), model(x).argmax(1))


def test_export_argmax_puts_vim_in_the_onnx_graph(tmp_path, models):
    cfg = config_to_dict(load_config("pp-mobileseg-tiny", ["data.input_size=64", "model.options={upsample: vim}"]))
    cfg["data"]["classes"] = [f"class{i}" for i in range(150)]
    torch.save(checkpoint_payload(models("pp_mobileseg_tiny"), cfg), tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    result = export_onnx(loaded.model, loaded.meta, tmp_path / "m.onnx", argmax=True, dynamic=True)
    ops = {n.op_type for n in onnx.load(result.path).graph.node}
    assert {"Unique", "Gather", "ArgMax", "Resize"} <= ops
    onnx_model = OnnxModel(result.path)
    meta = result.meta
    inputs = parity_inputs([], (64, 64), meta.dynamic, 32, "fp32", mean=meta.mean, std=meta.std)
    report = verify_onnx(onnx_model, loaded.model, inputs, "fp32")
    assert report.passed and report.agreement == 100.0, report.failures
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        assert np.array_equal(onnx_model(x.numpy()), loaded.model.predict_labels(x).numpy())


# -- PaddleSeg .pdparams ----------------------------------------------------------------------------------------
def write_pdparams(path, arrays: dict, protocol: int = 4):
    """A file as paddle.save writes one: a dict of numpy arrays plus its parameter-name table."""
    table = {k: f"param_{i}" for i, k in enumerate(arrays)}
    path.write_bytes(pickle.dumps({**arrays, NAME_TABLE: table}, protocol=protocol))
    return path


def as_paddle(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's state under PaddleSeg's names (BatchNorm `_mean`/`_variance`, no step counters)."""
    out = {}
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            name = paddle_key(key).replace(".running_mean", "._mean").replace(".running_var", "._variance")
            out[name] = value.numpy().copy()
    return out


# names copied from PaddleSeg's strideformer.py / pp_mobileseg.py module layout, with their Tiny shapes
PADDLE_NAMES = {
    "backbone.smb1.conv.c.weight": (16, 3, 3, 3),
    "backbone.smb1.blocks.0.mid_se.conv1.weight": (4, 16, 1, 1),
    "backbone.smb2.blocks.1.bottleneck_conv.bn._variance": (96,),
    "backbone.smb4.blocks.0.linear_conv.c.weight": (128, 384, 1, 1),
    "backbone.trans1.transformer_blocks.1.attn.stride_conv.0.bias": (64,),
    "backbone.trans2.transformer_blocks.0.attn.pos_emb_columnk.pos_embed": (1, 96, 16),
    "backbone.trans2.transformer_blocks.0.attn.proj_encode_row.1.c.weight": (192, 192, 1, 1),
    "backbone.trans2.transformer_blocks.1.attn.dwconv.c.weight": (384, 1, 3, 3),
    "backbone.trans1.transformer_blocks.0.mlp.dwconv.weight": (128, 1, 3, 3),
    "backbone.trans1.transformer_blocks.0.mlp.fc2.bn._mean": (64,),
    "backbone.inj_module.embedding_list.2.conv.weight": (256, 128, 1, 1),
    "backbone.inj_module.act_embedding_list.0.bn.bias": (256,),
    "decode_head.linear_fuse.conv.weight": (256, 1, 1, 1),
    "decode_head.conv_seg.bias": (150,),
}


def test_paddle_names_are_the_reference_layout(models):
    names = as_paddle(models("pp_mobileseg_tiny"))
    assert {k: names[k].shape for k in PADDLE_NAMES} == PADDLE_NAMES
    assert len(names) == len(set(names))  # one Paddle name per tensor


@pytest.mark.parametrize("arch", ARCHS)
def test_pdparams_file_loads_into_a_fresh_model(tmp_path, models, randomize, arch):
    source = randomize(create_model(arch, num_classes=150))
    path = write_pdparams(tmp_path / "model.pdparams", as_paddle(source))
    target = load_weights(create_model(arch, num_classes=150).eval(), path)
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(target.state_dict()[key], value), key
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(target.predict_labels(x), source.predict_labels(x))


def test_pdparams_unknown_key_and_wrong_shape_are_named(tmp_path, models):
    arrays = as_paddle(models("pp_mobileseg_tiny"))
    bad = write_pdparams(tmp_path / "extra.pdparams", {**arrays, "backbone.smb9.w": np.zeros(3, np.float32)})
    with pytest.raises(WeightsError, match="Paddle key 'backbone.smb9.w' has no counterpart in PPMobileSeg"):
        load_weights(create_model("pp_mobileseg_tiny", num_classes=150), bad)
    with pytest.raises(WeightsError, match="'head.conv_seg.weight' has shape .*different number of classes"):
        load_weights(create_model("pp_mobileseg_tiny", num_classes=19), write_pdparams(tmp_path / "m.pdparams", arrays))


def test_pdparams_linear_weights_are_transposed(tmp_path):
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5))
    paddle = {"0.weight": np.arange(15, dtype=np.float32).reshape(3, 5), "0.bias": np.ones(5, np.float32),
              "1.weight": np.ones(5, np.float32), "1.bias": np.zeros(5, np.float32),
              "1._mean": np.full(5, 0.5, np.float32), "1._variance": np.full(5, 2.0, np.float32)}
    state = read_pdparams(write_pdparams(tmp_path / "lin.pdparams", paddle, protocol=5))
    mapped = from_paddle(state, model, lambda k: k, "test")
    model.load_state_dict(mapped)
    assert torch.equal(model[0].weight, torch.arange(15.0).reshape(3, 5).t())
    assert torch.equal(model[1].running_var, torch.full((5,), 2.0))


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pdparams_with_code_or_other_globals_is_refused(tmp_path):
    marker = tmp_path / "ran"
    evil = RunsCode()
    evil.marker = marker
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps({"w": np.zeros(2, np.float32), "x": evil}, protocol=4))
    with pytest.raises(WeightsError) as info:
        read_pdparams(path)
    assert str(info.value) == (f"{path}: refused, the pickle names the Python global {os.system.__module__}.system "
                               "(a .pdparams file holds numpy arrays only)")
    assert not marker.exists()
    odict = tmp_path / "odict.pdparams"
    odict.write_bytes(pickle.dumps(OrderedDict(w=np.zeros(2, np.float32))))
    with pytest.raises(WeightsError, match="names the Python global collections.OrderedDict"):
        read_pdparams(odict)


@pytest.mark.parametrize("payload, message", [
    (b"\x80\x04not a pickle", "not a readable .pdparams pickle"),
    (pickle.dumps([np.zeros(2)]), "holds a dict of arrays, this one a list"),
    (pickle.dumps({"w": np.array(["a"], dtype=object)}), "'w' is not a numeric array"),
])
def test_pdparams_that_is_not_a_dict_of_arrays_is_refused(tmp_path, payload, message):
    path = tmp_path / "bad.pdparams"
    path.write_bytes(payload)
    with pytest.raises(WeightsError, match=message):
        read_pdparams(path)


# -- presets ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return generate_oranges(tmp_path_factory.mktemp("demo") / "oranges", 5, 64)


@pytest.mark.parametrize("preset", ["pp-mobileseg-base", "pp-mobileseg-tiny"])
def test_preset_trains_one_tiny_epoch_on_the_demo_data(tmp_path, demo_root, preset):
    cfg = load_config(preset, [f"data.root={demo_root}", "data.input_size=64", "model.num_classes=4",
                               "train.epochs=1", "train.batch_size=2", "data.workers=0",
                               f"project={tmp_path}", "name=run"])
    summary = Trainer(cfg).train()
    assert summary["epochs"] == 1 and summary["classes"] == ["background", "sunburn", "ulcer", "wind_scarring"]
    assert np.isfinite(summary["final"]["train/loss"])
    model = load_weights(create_model(cfg.model.arch, num_classes=4), summary["last"])
    assert not model.eval().vim_active and labels_are_argmax(model)  # 4 classes: plain argmax
