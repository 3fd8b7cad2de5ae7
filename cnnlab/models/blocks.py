"""Layers for pictures of any size: a residual block (two 3x3 convs with BatchNorm, and a shortcut that is the
identity, or a strided 1x1 conv with BatchNorm where the shape changes) and global average pooling, which
turns any height and width into one value per channel, so the classifier after it does not grow with the
picture."""

from torch import nn

from cnnlab.models.conv import Conv2d

KERAS_BN_MOMENTUM = 0.99  # Keras' BatchNormalization default, in Keras' meaning (below)


def batchnorm(channels: int, spatial: bool = True, momentum: float = KERAS_BN_MOMENTUM) -> nn.Module:
    """Keras' BatchNormalization: eps 1e-3, and `momentum` in Keras' meaning, the weight of the old moving
    average (Keras' 0.99 is PyTorch's 0.01). Every cnnlab BatchNorm is made here."""
    bn = nn.BatchNorm2d if spatial else nn.BatchNorm1d
    return bn(channels, eps=1e-3, momentum=1 - momentum)


class Residual(nn.Module):
    def __init__(self, channels: int, filters: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(Conv2d(channels, filters, 3, stride, padding=1, bias=False), batchnorm(filters),
                                  nn.ReLU(inplace=True), Conv2d(filters, filters, 3, 1, padding=1, bias=False),
                                  batchnorm(filters))
        changes = stride != 1 or channels != filters
        self.shortcut = nn.Sequential(Conv2d(channels, filters, 1, stride, bias=False), batchnorm(filters)) if changes \
            else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class GlobalAveragePooling(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))
