"""segkd.quant.fake_quant: the arithmetic of ONNX's QuantizeLinear and of ONNX Runtime's int32 conv bias."""

import torch

from segkd.quant.fake_quant import bias_rounding, fake_quantize


def test_a_tie_rounds_half_to_even_as_quantize_linear_does():
    scale, x = torch.tensor([0.0014509804314002395]), torch.tensor([0.08633333444595337])
    assert float(x / scale) == 59.5  # in float32, exactly
    y = fake_quantize(x, scale, torch.zeros(1), 0, 255, 1.0)
    assert float(y / scale) == 60.0  # ONNX: round(x / scale), half to even
    assert float(torch.fake_quantize_per_tensor_affine(x, float(scale), 0, 0, 255) / scale) < 59.5  # x · (1/scale)


def test_fake_quantize_clamps_and_passes_gradients_straight_through_inside_the_range():
    x = torch.tensor([-1.0, 0.26, 3.0], requires_grad=True)
    scale, zero_point = torch.tensor([0.1], requires_grad=True), torch.tensor([5.2], requires_grad=True)
    y = fake_quantize(x, scale, zero_point, 0, 20, 1.0)
    assert torch.allclose(y, torch.tensor([-0.5, 0.3, 1.5]))  # zero point 5: codes 0 (clamped), 8, 20 (clamped)
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0]
    assert abs(float(scale.grad) - ((3 - 2.6) + (0 - 5) + (20 - 5))) < 1e-5  # LSQ: round(x/s) - x/s, clamps q - zp
    assert abs(float(zero_point.grad) - (-0.1 - 0.1)) < 1e-6  # LSQ+: -s where clamped, 0 inside


def test_bias_rounding_moves_a_bias_onto_the_int32_grid_but_keeps_a_dead_channel_exact():
    bias = torch.tensor([0.31, -0.7, 5.0])
    weight_scale = torch.tensor([0.5, 0.25, 0.0])  # the third channel is dead: its bias does not fit int32
    rounded = bias + bias_rounding(bias, torch.tensor([0.1]), weight_scale)
    assert torch.allclose(rounded, torch.tensor([0.30, -0.7, 5.0]), atol=1e-7)  # grid 0.05, 0.025, none
