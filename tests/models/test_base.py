"""The model contract: slots -> taps, size divisor, the builder's option check, predict / predict_one, old keys."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from segkd.errors import ConfigError
from segkd.models import SegmentationModel, build_model_with_cfg, labels_are_argmax
from segkd.models.checkpoint import upgrade_keys


class TwoStageEncoder(nn.Module):
    """stage1 B×4×H/2×W/2, stage2 B×8×H/4×W/4."""

    feature_info = [dict(num_chs=4, reduction=2, module="a"), dict(num_chs=8, reduction=4, module="b")]

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, 2, 1)
        self.b = nn.Conv2d(4, 8, 3, 2, 1)

    def forward(self, x):
        s1 = self.a(x)
        return [s1, self.b(s1)]


class ImageAwareDecoder(nn.Module):
    """`mid` at H/4, then `fusion` at H/2 (stage1 + upsampled mid + a pooled image term)."""

    def __init__(self, chs):
        super().__init__()
        self.mid = nn.Conv2d(chs[1], chs[0], 1)
        self.seen_image = None

    def forward(self, feats, image):
        self.seen_image = image.shape
        mid = self.mid(feats[1])
        fusion = feats[0] + nn.functional.interpolate(mid, size=feats[0].shape[-2:]) + image.mean()
        return OrderedDict(mid=mid, fusion=fusion)


class ToyNet(SegmentationModel):
    def __init__(self, num_classes: int = 3, width: int = 4):
        super().__init__()
        self.backbone = TwoStageEncoder()
        self.decoder = ImageAwareDecoder(self.encoder_channels)
        self.head = nn.Conv2d(self.encoder_channels[0], num_classes, 1)


def toy(**options):
    cfg = dict(input_size=(3, 16, 24), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return build_model_with_cfg(ToyNet, "toy_net", default_cfg=cfg, **options).eval()


def test_taps_come_from_the_slots():
    model = toy()
    x = torch.randn(2, 3, 16, 24)
    logits, taps = model.forward_taps(x)
    assert {k: tuple(v.shape[1:]) for k, v in taps.items()} == {
        "stage1": (4, 8, 12), "stage2": (8, 4, 6), "mid": (4, 4, 6), "fusion": (4, 8, 12), "logits": (3, 8, 12),
    }
    assert list(taps) == ["stage1", "stage2", "mid", "fusion", "logits"]
    assert model.decoder.seen_image == x.shape  # `image` declared -> the decoder gets the input
    assert logits.shape == (2, 3, 16, 24) and torch.equal(model(x), logits)
    assert model.encoder_channels == [4, 8] and model.encoder_reductions == [2, 4] and model.size_divisor == 4
    with pytest.raises(ConfigError, match=r"multiples of 4, got 18×24: resize or pad to 20×24"):
        model(torch.randn(1, 3, 18, 24))


class LastStageConv(nn.Conv2d):
    def forward(self, feats):
        return super().forward(feats[-1])


def test_decoder_and_head_outputs_may_be_bare_tensors():
    class Plain(SegmentationModel):
        def __init__(self):
            super().__init__()
            self.backbone = TwoStageEncoder()
            self.decoder = LastStageConv(8, 5, 1)  # a bare tensor is tapped as `fusion`
            self.head = nn.Conv2d(5, 2, 1)

    _, taps = Plain().forward_taps(torch.randn(1, 3, 8, 8))
    assert list(taps) == ["stage1", "stage2", "fusion", "logits"] and taps["fusion"].shape == (1, 5, 2, 2)


def test_builder_refuses_unknown_and_fixed_options_by_name():
    with pytest.raises(ConfigError, match=r"model 'toy_net' has no option 'depth' \(options: num_classes, width\)"):
        toy(depth=3)
    with pytest.raises(ConfigError, match=r"model 'toy_net' fixes 'width' itself"):
        build_model_with_cfg(ToyNet, "toy_net", default_cfg={}, fixed=dict(width=2), width=3)
    with pytest.raises(ConfigError, match="model.pretrained=true or model.backbone_weights=FILE, not both"):
        toy(pretrained=True, backbone_weights="x.pth")
    model = toy(num_classes=5)
    assert model.head.out_channels == 5 and model.default_cfg["input_size"] == (3, 16, 24)
    assert not model.backbone_loaded and model.backbone_source is None


def test_builder_loads_the_backbone_and_records_where_from(tmp_path):
    calls = []

    def load(model, path):
        calls.append(path)
        return path or "hf-hub:org/toy"

    model = build_model_with_cfg(ToyNet, "toy_net", True, default_cfg={}, load_backbone=load)
    assert calls == [None] and model.backbone_loaded and model.backbone_source == "hf-hub:org/toy"
    model = build_model_with_cfg(ToyNet, "toy_net", default_cfg={}, load_backbone=load, backbone_weights="b.pth")
    assert calls[-1] == "b.pth" and model.backbone_source == "b.pth"


def test_predict_takes_pil_and_numpy_of_odd_sizes():
    torch.manual_seed(0)
    model = toy()
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((13, 29), (40, 7))]
    labels = model.predict([arrays[0], Image.fromarray(arrays[1])])
    assert [lab.shape for lab in labels] == [(13, 29), (40, 7)] and all(lab.dtype == np.int64 for lab in labels)
    assert set(np.unique(labels[0])) <= {0, 1, 2}
    one = model.predict_one(Image.fromarray(arrays[0]).convert("RGBA"))  # any PIL mode is taken as RGB
    assert np.array_equal(one, labels[0]) and np.array_equal(model.predict(arrays[0]), one)

    # what predict computes: the cfg's mean/std and input size, logits resized back (bilinear), argmax
    x = torch.from_numpy(arrays[0]).permute(2, 0, 1)[None].float() / 255
    x = (nn.functional.interpolate(x, size=(16, 24), mode="bilinear") - 0.5) / 0.25
    with torch.no_grad():
        ref = nn.functional.interpolate(model(x), size=(13, 29), mode="bilinear").argmax(1)[0].numpy()
    assert np.array_equal(one, ref)
    assert not model.training
    model.train()
    model.predict_one(arrays[1])
    assert model.training  # eval for the call only
    with pytest.raises(ConfigError, match="H×W×3 uint8 RGB arrays"):
        model.predict_one(np.zeros((4, 4), np.float32))


def test_labels_are_argmax_unless_the_family_overrides_predict_labels():
    class OwnLabels(ToyNet):
        def predict_labels(self, x):
            return torch.zeros(x.shape[0], *x.shape[-2:], dtype=torch.long)

    assert labels_are_argmax(toy()) and labels_are_argmax(nn.Conv2d(3, 3, 1))
    own = build_model_with_cfg(OwnLabels, "own", default_cfg={"input_size": (3, 16, 24)}).eval()
    assert not labels_are_argmax(own)
    assert (own.predict_one(np.full((9, 11, 3), 200, np.uint8)) == 0).all()


def test_old_checkpoint_keys_are_upgraded_only_when_needed():
    class Moved(ToyNet):
        legacy_keys = ((r"^mid\.", "decoder.mid."),)

    model = Moved()
    state = model.state_dict()
    old = {k.replace("decoder.mid.", "mid."): v for k, v in state.items()}
    assert upgrade_keys(model, old).keys() == state.keys()
    assert upgrade_keys(model, state) is state
