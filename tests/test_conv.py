"""cnnlab.conv.Conv2d: on small output maps its weight gradient is a GEMM of our own; it must be nn.Conv2d's."""

import pytest
import torch
from torch import nn

from cnnlab.models import conv


def outputs_and_grads(module, x, grad_out, bf16):
    x = x.clone().requires_grad_()
    module.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = module(x)
    y.backward(grad_out.to(y.dtype))
    return y.float(), x.grad.float(), module.weight.grad, module.bias.grad


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("shape", [(16, 8, 6, 5, 0), (8, 4, 3, 3, 1), (4, 6, 5, 3, 0)],
                         ids=["6x6-k5-valid", "3x3-k3-same", "5x5-k3-valid"])
def test_small_map_gradients_are_nn_conv2d_gradients(shape, channels_last, bf16):
    cin, cout, size, k, pad = shape
    torch.manual_seed(0)
    ours = conv.Conv2d(cin, cout, k, padding=pad)
    reference = nn.Conv2d(cin, cout, k, padding=pad)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(5, cin, size, size)
    if channels_last:
        ours, reference = ours.to(memory_format=torch.channels_last), reference.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    out = size + 2 * pad - k + 1
    assert out * out <= conv.SMALL_MAP  # these shapes take the GEMM path
    grad_out = torch.randn(5, cout, out, out)
    got = outputs_and_grads(ours, x, grad_out, bf16)
    want = outputs_and_grads(reference, x, grad_out, bf16)
    tolerance = 2e-2 if bf16 else 1e-5  # bf16 keeps 8 bits of mantissa; fp32 differs in summation order only
    for a, b in zip(got, want):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= tolerance * b.abs().max()
    assert ours.weight.grad.stride() == ours.weight.stride()  # the optimizer walks both in the same order


def test_large_maps_and_evaluation_take_nn_conv2d_path():
    """7x7 outputs, eval mode and no_grad never enter the GEMM path (its autograd node would show)."""
    m = conv.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 7, 7, requires_grad=True)
    assert "SmallMap" not in type(m(x).grad_fn).__name__
    small = torch.randn(2, 3, 3, 3, requires_grad=True)
    assert "SmallMap" in type(m(small).grad_fn).__name__
    m.eval()
    assert "SmallMap" not in type(m(small).grad_fn).__name__
