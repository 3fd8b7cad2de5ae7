"""nn.Dropout whose random mask, on the CPU, costs a fraction of torch's.

torch's CPU dropout draws one Bernoulli sample per value (`bernoulli_`, a Mersenne-Twister call and a float
compare each): on cifar-cnn's bf16 training step that was 11 ms of 73, a quarter of all its multiplies. Here
each 64-bit random number is split into four 16-bit ones and a value is dropped when its 16 bits fall below
rate x 65536: on cifar-cnn's first dropout (64x32x16x16, bf16) the forward and backward passes together took
0.8 ms, where torch's forward alone took 6.6; over the whole bf16 step, dropout went from 11.4 to 4.1 ms.

The rate is thereby rounded to a multiple of 1/65536 (0.3 drops 0.300003 of the values) and the kept values are
scaled by 1 / (1 - that rounded rate), so in fp32 each value's expectation is its input, as with nn.Dropout
(in bf16 the scale is rounded to bf16, as nn.Dropout's is).
The numbers come from torch's global generator, so a seeded or resumed run draws the same masks. GPUs, and
evaluation everywhere, take nn.Dropout's own path.
"""

import torch
from torch import nn

LEVELS = 1 << 16  # the mask's resolution: 16 random bits per value


class Dropout(nn.Dropout):
    def forward(self, x):
        if not (self.training and self.p > 0 and x.device.type == "cpu" and not self.inplace):
            return super().forward(x)
        return _Dropout.apply(x, self.p)


def mask(x: torch.Tensor, rate: float) -> torch.Tensor:
    """The factor each value of x is multiplied by, shaped and laid out as x, in its dtype: 0 where a value is
    dropped, 1 / (1 - the rounded rate) where it is kept."""
    n = x.numel()
    drops = min(round(rate * LEVELS), LEVELS - 1)  # a rate of 0.99999 still keeps 1 in 65536
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2 ** 63, None)  # the full 64 bits
    lanes = bits.view(torch.int16)[:n]  # four uniform 16-bit numbers per draw, -32768..32767
    factors = (lanes >= drops - LEVELS // 2).to(x.dtype).mul_(LEVELS / (LEVELS - drops))
    # x's own strides over the n factors, so the multiply reads both in one memory order (channels_last too):
    # torch.where on a channels_last bool mask ran 4x slower than this multiply
    return factors.as_strided(x.shape, x.stride())


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, rate):
        if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
            x = x.contiguous()  # strides that cover each of its values once
        factors = mask(x, rate)
        ctx.save_for_backward(factors)
        return x * factors

    @staticmethod
    def backward(ctx, grad):
        (factors,) = ctx.saved_tensors
        return grad * factors, None
