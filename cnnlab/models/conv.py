"""nn.Conv2d whose weight gradient, on small feature maps, is one matrix multiply.

oneDNN computes a conv's weight gradient by parallelising over the output map. On the tiny maps at the end of
a CNN that leaves its kernels idle: on mnist-cnn's last conv (6x6 in, 2x2 out) it ran at about 90 GFLOP/s on
this project's 2-core machine. The same gradient written as grad_out^T @ im2col(input), one GEMM whose inner
dimension is batch x positions, was 5x faster there and 4.4x on cifar-fast's last conv (3x3 out), in bf16.
On mnist-cnn's 6x6 output the GEMM itself won, but copying out the patches cost more than it saved inside a
training step; on 7x7 and larger maps oneDNN was faster in every case measured. So only maps up to 3x3.

The choice is made by shape, never by timing, so a resumed run computes exactly what an uninterrupted one does.
Evaluation, export and frozen weights take nn.Conv2d's own path.
"""

import torch
import torch.nn.functional as F
from torch import nn

SMALL_MAP = 9  # output positions (3x3) at or below which the GEMM path won in every measured case


class Conv2d(nn.Conv2d):
    def forward(self, x):
        if not (self.training and torch.is_grad_enabled() and self.weight.requires_grad and x.device.type == "cpu"
                and self._small_map(x)):  # a CPU shortcut (oneDNN's kernels); GPUs take cuDNN's
            return super().forward(x)
        # The cast autocast would do, done here so the function below sees the dtypes it computes in.
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else self.weight.dtype
        bias = None if self.bias is None else self.bias.to(dtype)
        with torch.autocast("cpu", enabled=False):
            return _SmallMapConv.apply(x.to(dtype), self.weight.to(dtype), bias, self.padding)

    def _small_map(self, x) -> bool:
        """Stride 1, zero padding given in pixels, a batch of images, and an output of SMALL_MAP positions or fewer."""
        if (self.stride, self.dilation, self.groups, self.padding_mode) != ((1, 1), (1, 1), 1, "zeros") \
                or isinstance(self.padding, str) or x.dim() != 4:
            return False
        oh = x.shape[2] + 2 * self.padding[0] - self.kernel_size[0] + 1
        ow = x.shape[3] + 2 * self.padding[1] - self.kernel_size[1] + 1
        return oh * ow <= SMALL_MAP


def _patches(x: torch.Tensor, kernel: tuple, padding: tuple) -> torch.Tensor:
    """im2col: (N*Ho*Wo, kh*kw*C), each row one receptive field in (kh, kw, C) order, the order of a
    channels_last weight's rows."""
    (kh, kw), (ph, pw) = kernel, padding
    x = F.pad(x.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph)).contiguous()  # N, H, W, C
    n, h, w, c = x.shape
    s = x.stride()
    windows = x.as_strided((n, h - kh + 1, w - kw + 1, kh, kw, c), (s[0], s[1], s[2], s[1], s[2], s[3]))
    return windows.reshape(-1, kh * kw * c)


class _SmallMapConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:  # oneDNN's input gradient is not the slow part: keep it
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1, 1], list(ctx.padding), [1, 1], False, [0, 0], 1,
                [True, False, False])[0]
        out_channels, in_channels, kh, kw = weight.shape
        g = grad_out.permute(0, 2, 3, 1).reshape(-1, out_channels)  # N*Ho*Wo, Cout
        if ctx.needs_input_grad[1]:
            grad_w = g.t() @ _patches(x, (kh, kw), ctx.padding)  # Cout, kh*kw*Cin
            grad_w = grad_w.view(out_channels, kh, kw, in_channels).permute(0, 3, 1, 2)  # channels_last strides
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b, None
