"""segkd.quant: BatchNorm folding, the QAT plan (logits conv fp32), calibration, and a QAT step that learns."""

import pytest
import torch
import torch.nn.functional as F
from timm.layers import LayerScale2d
from torch import nn

from segkd.errors import JobFailed, WeightsError
from segkd.quant import (ActivationFakeQuant, QATSpec, WeightFakeQuant, apply_qat, calibrating, fake_quantizers,
                         is_qat, prepare_qat, set_fake_quant)


class Net(nn.Module):
    """conv-BN-ReLU, conv (+ residual), 1×1 logits conv: the shapes of a segmentation head."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU(inplace=True)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.logits = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.act(self.bn(self.c1(x)))
        return self.logits(self.c2(y) + y)


def net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    model = Net()
    model.bn.running_mean.uniform_(-0.5, 0.5)
    model.bn.running_var.uniform_(0.5, 2.0)
    model.bn.weight.data.uniform_(0.5, 1.5)
    return model


def quantised(model: nn.Module, seed: int = 1) -> nn.Module:
    prepare_qat(model, torch.randn(1, 3, 16, 16))
    torch.manual_seed(seed)
    with calibrating(model):
        for _ in range(3):
            model(torch.randn(4, 3, 16, 16))
    return model


def test_plan_folds_the_bn_and_keeps_the_logits_conv_fp32():
    model = net()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = model.eval()(x)
    spec = prepare_qat(model, x)
    assert spec.folded == [["c1", "bn"]] and spec.quantized == ["c1", "c2"] and spec.logits_op == "logits"
    assert isinstance(model.bn, nn.Identity) and model.c1.bias is not None
    assert not hasattr(model.logits, "input_quant") and not hasattr(model.logits, "parametrizations")
    assert isinstance(model.c2.input_quant, ActivationFakeQuant)
    assert isinstance(model.c2.parametrizations.weight[0], WeightFakeQuant)
    set_fake_quant(model, enabled=False)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), before, atol=1e-5)  # folding alone changes nothing
    assert is_qat(model) and model.qat_spec is spec


class ScaledResidual(nn.Module):
    """MetaFormer's block tail: x + gamma · BN(conv(x)), gamma a timm LayerScale2d."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.conv, self.bn, self.ls = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), LayerScale2d(8, 0.1)
        self.logits = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        return self.logits(x + self.ls(self.bn(self.conv(x))))


def test_a_layer_scale_after_a_conv_and_its_bn_folds_into_the_conv():
    torch.manual_seed(0)
    model = ScaledResidual()
    model.ls.gamma.data.uniform_(0.1, 1.0)
    model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = model.eval()(x)
    spec = prepare_qat(model, x)
    assert spec.folded == [["conv", "bn"], ["conv", "ls"]]  # in order: BN first, then the scale on its output
    assert isinstance(model.ls, nn.Identity) and isinstance(model.bn, nn.Identity)
    set_fake_quant(model, enabled=False)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), before, atol=1e-5)
    rebuilt = apply_qat(ScaledResidual(), QATSpec.from_dict(spec.to_dict()))  # a checkpoint's surgery
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


def test_calibration_sets_min_max_ranges_and_7_bit_weight_scales():
    model = quantised(net())
    q = model.c1.input_quant
    lo, hi = q.range
    assert lo < 0 < hi
    assert float(q.scale.detach()) == pytest.approx((hi - lo) / 255, rel=1e-6)
    assert float(q.zero_point.detach()) == round(-lo / float(q.scale.detach()))
    w = model.c2.parametrizations.weight
    amax = w.original.detach().abs().flatten(1).amax(1)
    assert torch.allclose(w[0].scale.detach(), amax / 63.5)
    grid = (model.c2.weight / w[0].scale.detach().reshape(-1, 1, 1, 1))
    assert torch.allclose(grid, grid.round(), atol=1e-4) and grid.abs().max() <= 64  # 7-bit integers


def test_a_qat_step_updates_weights_and_scales():
    model = quantised(net()).train()
    quantizers = fake_quantizers(model)
    scales = [q.scale.detach().clone() for q in quantizers]
    weight = model.c2.parametrizations.weight.original.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, target = torch.randn(4, 3, 16, 16), torch.randint(0, 4, (4, 16, 16))
    F.cross_entropy(model(x), target).backward()
    optimizer.step()
    assert not torch.equal(model.c2.parametrizations.weight.original, weight)
    assert all(not torch.equal(q.scale, s) for q, s in zip(quantizers, scales))
    assert all(q.scale.grad is not None and q.scale.grad.abs().sum() > 0 for q in quantizers)


def test_a_conv_reading_a_quantised_output_unchanged_has_no_input_quantiser():
    class Direct(Net):
        def forward(self, x):
            return self.logits(self.c2(self.bn(self.c1(x))))  # c1 -> (folded BN) -> c2: one Q/DQ pair between

    assert quantised(net()).qat_spec.reads_int8 == []  # ReLU(inplace) between c1 and c2 changes the tensor
    direct = quantised(_randomised(Direct()))
    assert direct.qat_spec.reads_int8 == [["c2", "c1"]] and not hasattr(direct.c2, "input_quant")
    with torch.inference_mode():  # eval's mode: no version counters needed at run time
        assert direct.eval()(torch.randn(1, 3, 16, 16)).shape == (1, 4, 16, 16)


def test_apply_qat_rebuilds_the_same_state_dict_layout():
    trained = quantised(net())
    fresh = apply_qat(Net(), QATSpec.from_dict(trained.qat_spec.to_dict()))
    fresh.load_state_dict(trained.state_dict(), strict=True)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), trained.eval()(x))


def test_a_fold_that_changes_the_outputs_fails():
    class Shared(Net):
        def forward(self, x):
            y = self.c1(x)
            return self.logits(self.act(self.bn(y)) + y)  # the conv output is read past its BN

    with pytest.raises(JobFailed, match="folding BatchNorm"):
        prepare_qat(_randomised(Shared()), torch.randn(1, 3, 8, 8))


def _randomised(model):
    model.bn.running_mean.uniform_(-0.5, 0.5)
    model.bn.running_var.uniform_(0.5, 2.0)
    return model


def test_malformed_metadata_is_a_weights_error():
    with pytest.raises(WeightsError, match="quant"):
        QATSpec.from_dict({"folded": []})
