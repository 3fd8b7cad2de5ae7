"""cnnlab's CPU dropout (cnnlab/models/dropout.py) is nn.Dropout's function: the same drop rate to 1/65536,
kept values scaled so each expectation is its input, the gradient through the same mask, any memory layout."""

import pytest
import torch
from torch import nn

from cnnlab.models.dropout import LEVELS, Dropout


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_drops_the_rate_of_values_in_every_lane_and_keeps_the_expectation(rate):
    torch.manual_seed(0)
    x = torch.ones(1 << 20)
    y = Dropout(rate)(x)
    dropped = y == 0
    # 1M values: the binomial's standard deviation is at most 0.0005; 4 of them is the tolerance.
    assert abs(dropped.float().mean().item() - rate) < 0.002
    # Each of the four 16-bit lanes of a 64-bit draw drops at the rate (none is a biased bit field).
    lanes = dropped.view(-1, 4).float().mean(0)
    assert (lanes - rate).abs().max().item() < 0.004
    scale = LEVELS / (LEVELS - round(rate * LEVELS))
    assert torch.equal(y[~dropped], torch.full_like(y[~dropped], scale))
    assert abs(y.mean().item() - 1) < 0.005  # the expectation of each value is its input


def test_gradient_flows_through_the_kept_values_times_the_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 32, 16, 16).requires_grad_()
    y = Dropout(0.3)(x)
    g = torch.randn_like(y)
    y.backward(g)
    factors = torch.where(x != 0, y / x, 0).detach()
    assert torch.allclose(x.grad, g * factors)
    assert torch.equal(x.grad == 0, y == 0)


def test_keeps_channels_last_and_takes_any_strides():
    torch.manual_seed(2)
    x = torch.randn(8, 16, 6, 6).contiguous(memory_format=torch.channels_last)
    y = Dropout(0.5)(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    strided = torch.randn(8, 10, 6)[:, ::2]  # neither contiguous nor channels_last
    z = Dropout(0.5)(strided)
    assert z.shape == strided.shape
    assert torch.equal(z[z != 0], (strided * 2)[z != 0])


def test_a_seed_draws_the_same_mask_and_evaluation_is_the_identity():
    x = torch.randn(32, 100)
    masks = []
    for _ in range(2):
        torch.manual_seed(3)
        masks.append(Dropout(0.4)(x) == 0)
    assert torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[0], Dropout(0.4)(x) == 0)  # the next draw is a new mask
    assert torch.equal(Dropout(0.4).eval()(x), x)
    assert torch.equal(Dropout(0.0)(x), x)


def test_bf16_autocast_drops_in_bf16_like_nn_dropout():
    torch.manual_seed(4)
    x = torch.randn(16, 64).bfloat16()
    y = Dropout(0.5)(x)
    assert y.dtype == torch.bfloat16
    assert torch.equal(y[y != 0], (x * 2)[y != 0])
    reference = nn.Dropout(0.5)(x)  # torch's own, for the same dtype and shape
    assert reference.dtype == y.dtype and reference.shape == y.shape
