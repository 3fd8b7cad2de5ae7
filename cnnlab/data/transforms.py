"""What happens to a uint8 batch on its way into a model: random augmentations (training only) and the conversion
to float pixels in [0, 1]. Every caller (training, evaluation, predict, export) converts through `to_input`."""

import torch
import torch.nn.functional as F


def to_input(x_uint8: torch.Tensor, channels_last: bool) -> torch.Tensor:
    x = x_uint8.float().mul_(1.0 / 255)  # pixels in [0, 1], as the lab's x / 255
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def augment(x: torch.Tensor, flip: bool, translate: int, blur: float = 0.0) -> torch.Tensor:
    """Random left-right flips, shifts and blurs of a uint8 batch, drawn from torch's CPU generator (seeded per
    epoch, saved in resume points) on any device, so a GPU run draws the CPU's numbers. Shifts pad by reflection
    and crop; images sharing a shift are cropped together, so a batch costs at most (2 * translate + 1)^2 slicing
    ops, not one per image."""
    if flip:
        mirrored = (torch.rand(len(x)) < 0.5).to(x.device)
        x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
    if translate:
        t, (h, w) = translate, x.shape[-2:]
        padded = F.pad(x.float(), (t, t, t, t), mode="reflect").to(torch.uint8)
        shifts = torch.randint(0, 2 * t + 1, (2, len(x)))
        out = torch.empty_like(x)
        for code in (shifts[0] * (2 * t + 1) + shifts[1]).unique().tolist():
            dy, dx = divmod(code, 2 * t + 1)
            same = ((shifts[0] == dy) & (shifts[1] == dx)).nonzero().squeeze(1).to(x.device)
            out[same] = padded[same, :, dy:dy + h, dx:dx + w]
        x = out
    if blur:
        x = gaussian_blur(x, torch.rand(len(x)) * blur)
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each uint8 image with its own Gaussian (sigma in pixels, 0 = unchanged): a separable 5-tap filter,
    one grouped conv per direction for the whole batch, reflected borders."""
    n, c, h, w = x.shape
    taps = torch.arange(-2, 3, dtype=torch.float32)
    kernel = torch.exp(-taps ** 2 / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0).to(x.device)  # a row per image channel
    y = F.pad(x.float().reshape(1, n * c, h, w), (2, 2, 2, 2), mode="reflect")
    y = F.conv2d(y, kernel[:, None, None, :], groups=n * c)  # along rows
    y = F.conv2d(y, kernel[:, None, :, None], groups=n * c)  # along columns
    return y.round_().clamp_(0, 255).to(torch.uint8).reshape(n, c, h, w)
