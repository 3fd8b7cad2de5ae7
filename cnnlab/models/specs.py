"""Declarative model specs (a list of layer dicts, as in a TOML file) built into torch.nn modules.

Layers follow Keras' defaults so that the lab's networks train the same way: Glorot-uniform kernels (or
He-uniform, Keras' kernel_initializer="he_uniform"), zero biases, BatchNorm with momentum 0.99 and epsilon
1e-3, pooling with stride = pool size unless given.

    {type = "conv2d", filters = 32, kernel = 5, padding = "same", activation = "relu"}
    {type = "maxpool", size = 2, stride = 2}      {type = "avgpool", size = 2}
    {type = "batchnorm"}   {type = "dropout", rate = 0.1}   {type = "flatten"}
    {type = "dense", units = 1024, activation = "relu"}   {type = "dense", units = "classes"}
    {type = "activation", name = "relu"}
    {type = "conv2d", filters = 64, kernel = 3, padding = "same", bias = false}   (no bias: a BatchNorm follows)
    {type = "whiten", kernel = 2}   a frozen conv whose filters whiten the training images' kxk patches
    {type = "flip_tta"}   first layer only: at evaluation, average the logits of each image and its mirror
    {type = "residual", filters = 64, stride = 2}   two 3x3 convs + BatchNorm and a shortcut (blocks.py)
    {type = "global_avgpool"}   each channel's mean over the picture: a classifier for any picture size
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.core import config
from cnnlab.core.errors import CnnlabError
from cnnlab.models import blocks
from cnnlab.models.conv import Conv2d
from cnnlab.models.dropout import Dropout

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU, "gelu": nn.GELU,
               "leaky_relu": nn.LeakyReLU, "linear": None, None: None}
LAYER_KEYS = {
    "conv2d": {"filters", "kernel", "padding", "stride", "activation", "bias"},
    "whiten": {"kernel"}, "flip_tta": set(),
    "maxpool": {"size", "stride"}, "avgpool": {"size", "stride"},
    "batchnorm": {"momentum"}, "dropout": {"rate"}, "flatten": set(),
    "dense": {"units", "activation"}, "activation": {"name"},
    "residual": {"filters", "stride"}, "global_avgpool": set(),
}


@dataclass
class LayerInfo:
    """One row of `cnnlab summary`."""
    name: str
    output_shape: tuple
    params: int  # trainable
    buffers: int  # non-trainable statistics (BatchNorm's moving mean and variance)
    flops: int  # per image, forward pass, multiply and add counted separately


MAX_PARAMS = 500_000_000  # 2 GB of float32: beyond any small classifier, and beyond this machine's patience
LIMITS = {"filters": 1 << 16, "units": 1 << 20, "kernel": 64, "stride": 64, "size": 64}


def _int(layer, key, default=None, minimum=1):
    v = layer.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not minimum <= v <= LIMITS[key]:
        raise CnnlabError(f"layer {layer}: {key} must be an integer from {minimum} to {LIMITS[key]}")
    return v


def _activation(layer, key="activation"):
    name = layer.get(key)
    if not (name is None or isinstance(name, str)) or name not in ACTIVATIONS:
        raise CnnlabError(f"layer {layer}: unknown activation {name!r} (choose {', '.join(k for k in ACTIVATIONS if k)})")
    return ACTIVATIONS[name]() if ACTIVATIONS[name] else None


def build(layers: list, input_shape: tuple, num_classes: int, init: str = "glorot_uniform"):
    """Return (nn.Sequential, [LayerInfo]) or raise CnnlabError naming the layer that does not fit."""
    if not layers:
        raise CnnlabError("the model has no layers")
    modules, infos, shape = [], [], tuple(input_shape)  # (C, H, W) for images, (F,) once flattened
    budget = Budget()
    tta = bool(layers) and isinstance(layers[0], dict) and layers[0].get("type") == "flip_tta"
    for i, layer in enumerate(layers):
        if tta and i == 0 and len(layer) == 1:
            infos.append(LayerInfo("flip_tta_1", shape, 0, 0, 0))
            continue
        if not isinstance(layer, dict) or not isinstance(layer.get("type"), str) or layer["type"] not in LAYER_KEYS:
            raise CnnlabError(f"layer {i + 1}: type must be one of {', '.join(LAYER_KEYS)}, got {layer!r}")
        kind = layer["type"]
        unknown = set(layer) - LAYER_KEYS[kind] - {"type"}
        if unknown:
            raise CnnlabError(f"layer {i + 1} ({kind}): unknown key(s) {', '.join(sorted(unknown))}")
        budget.where = f"layer {i + 1} ({kind})"
        if kind == "flip_tta":
            raise CnnlabError(f"{budget.where}: flip_tta must be the first layer (it wraps the whole network)")
        if kind in IMAGE_LAYERS and len(shape) != 3:
            raise CnnlabError(f"{budget.where} needs an image input but gets a flat vector of {shape[0]}")
        new, shape, flops = BUILDERS[kind](layer, shape, num_classes, budget)
        params = sum(p.numel() for m in new for p in m.parameters() if p.requires_grad)
        buffers = sum(b.numel() for m in new for n, b in m.named_buffers() if n != "num_batches_tracked")
        buffers += sum(p.numel() for m in new for p in m.parameters() if not p.requires_grad)
        infos.append(LayerInfo(f"{kind}_{i + 1}", shape, params, buffers, flops))
        modules += new
    if shape != (num_classes,):
        raise CnnlabError(f"the model's output is {shape} but the data set has {num_classes} classes: "
                          f"end with {{type = \"dense\", units = \"classes\"}}")
    model = (FlipAveraged if tta else nn.Sequential)(*_pool_before_relu(modules))
    _keras_init(model, init)
    return model, infos


class Budget:
    """The layer being built (`where`, for its errors) and the parameters so far, each layer's counted by
    `spend` before anything is allocated."""

    def __init__(self):
        self.where, self.total = "", 0

    def spend(self, params: int):
        if self.total + params > MAX_PARAMS:
            raise CnnlabError(f"{self.where}: the model would have over {MAX_PARAMS:,} parameters")
        self.total += params


# Each kind of layer: (modules, output shape, forward FLOPs per image) from its dict and input shape, or a
# CnnlabError saying why it does not fit.
IMAGE_LAYERS = {"conv2d", "maxpool", "avgpool", "whiten", "residual", "global_avgpool"}


def _with_activation(modules: list, layer, key="activation") -> list:
    act = _activation(layer, key)
    return modules + [act] if act is not None else modules


def _conv2d(layer, shape, num_classes, budget):
    c, h, w = shape
    f, k, s = _int(layer, "filters"), _int(layer, "kernel"), _int(layer, "stride", 1)
    bias, pad, new = layer.get("bias", True), layer.get("padding", "valid"), []
    if not isinstance(bias, bool):
        raise CnnlabError(f"{budget.where}: bias must be true or false")
    budget.spend(k * k * c * f + f * bias)
    if pad not in ("same", "valid"):
        raise CnnlabError(f"{budget.where}: padding must be 'same' or 'valid'")
    if pad == "same":
        oh, ow = -(-h // s), -(-w // s)
        # TensorFlow's rule: pad so the output is ceil(input / stride), the odd pixel at the bottom/right.
        ph, pw = max((oh - 1) * s + k - h, 0), max((ow - 1) * s + k - w, 0)
        if ph % 2 or pw % 2:
            new.append(nn.ZeroPad2d((pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)))
            conv = Conv2d(c, f, k, s, bias=bias)
        else:
            conv = Conv2d(c, f, k, s, padding=(ph // 2, pw // 2), bias=bias)
    else:
        if h < k or w < k:
            raise CnnlabError(f"{budget.where}: a {k}x{k} 'valid' kernel needs at least {k}x{k} input, gets {h}x{w}")
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        conv = Conv2d(c, f, k, s, bias=bias)
    return _with_activation(new + [conv], layer), (f, oh, ow), 2 * k * k * c * f * oh * ow


def _whiten(layer, shape, num_classes, budget):
    c, h, w = shape
    k = _int(layer, "kernel", 2)
    if h < k or w < k:
        raise CnnlabError(f"{budget.where}: a {k}x{k} kernel needs at least {k}x{k} input, gets {h}x{w}")
    f = 2 * c * k * k  # each eigenvector and its negative: a ReLU-free layer loses nothing either way
    budget.spend(f * c * k * k + f)
    out = (f, h - k + 1, w - k + 1)
    return [Whiten(c, f, k)], out, 2 * k * k * c * f * out[1] * out[2]


def _pool(layer, shape, num_classes, budget):
    c, h, w = shape
    p = _int(layer, "size", 2)
    s = _int(layer, "stride", p)
    if h < p or w < p:
        raise CnnlabError(f"{budget.where}: pool size {p} needs at least {p}x{p} input, gets {h}x{w}")
    pool = nn.MaxPool2d if layer["type"] == "maxpool" else nn.AvgPool2d
    return [pool(p, s)], (c, (h - p) // s + 1, (w - p) // s + 1), 0


def _residual(layer, shape, num_classes, budget):
    c, h, w = shape
    f, s = _int(layer, "filters"), _int(layer, "stride", 1)
    weights = 9 * c * f + 9 * f * f + (s != 1 or c != f) * c * f  # two 3x3 convs, and a 1x1 shortcut if needed
    budget.spend(weights)
    oh, ow = -(-h // s), -(-w // s)  # 3x3 convs padded by 1: ceil(input / stride)
    return [blocks.Residual(c, f, s)], (f, oh, ow), 2 * oh * ow * weights


def _batchnorm(layer, shape, num_classes, budget):
    momentum = layer.get("momentum", blocks.KERAS_BN_MOMENTUM)  # Keras' meaning: the weight of the old average
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
        raise CnnlabError(f"{budget.where}: momentum must be in [0, 1)")
    return [blocks.batchnorm(shape[0], len(shape) == 3, momentum)], shape, 0


def _dropout(layer, shape, num_classes, budget):
    rate = layer.get("rate", 0.5)
    if not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise CnnlabError(f"{budget.where}: rate must be in [0, 1)")
    return [Dropout(rate)], shape, 0


def _dense(layer, shape, num_classes, budget):
    if len(shape) != 1:
        raise CnnlabError(f"{budget.where} needs a flat input: add {{type = \"flatten\"}} before it (input is {shape})")
    units = num_classes if layer.get("units") == "classes" else _int(layer, "units")
    budget.spend(shape[0] * units + units)
    return _with_activation([nn.Linear(shape[0], units)], layer), (units,), 2 * shape[0] * units


BUILDERS = {
    "conv2d": _conv2d, "whiten": _whiten, "maxpool": _pool, "avgpool": _pool, "residual": _residual,
    "global_avgpool": lambda layer, shape, n, budget: ([blocks.GlobalAveragePooling()], (shape[0],), 0),
    "batchnorm": _batchnorm, "dropout": _dropout,
    "flatten": lambda layer, shape, n, budget: ([nn.Flatten()], (math.prod(shape),), 0),
    "dense": _dense,
    "activation": lambda layer, shape, n, budget: (_with_activation([], layer, "name"), shape, 0),
}


def _pool_before_relu(modules: list) -> list:
    """ReLU then max-pool is the same function, with the same gradients, as max-pool then ReLU (ReLU never
    reorders values), and pooling first leaves ReLU and its backward a quarter of the values: mnist-cnn's
    training step went from 9.1 to 7.4 ms (medians of 5). Neither module has weights: saved models load
    unchanged."""
    out = list(modules)
    for j in range(len(out) - 1):
        if type(out[j]) is nn.ReLU and isinstance(out[j + 1], nn.MaxPool2d):
            out[j], out[j + 1] = out[j + 1], out[j]
    return out


class FlipAveraged(nn.Sequential):
    """Test-time augmentation that travels with the model (predict, serve and export included): in eval mode
    the logits are the mean over the image and its left-right mirror. Training sees single images."""

    def forward(self, x):
        logits = super().forward(x)
        if self.training:
            return logits
        return (logits + super().forward(x.flip(-1))) / 2


class Whiten(nn.Conv2d):
    """A frozen kxk conv whose filters are the eigenvectors of the training patches' covariance, scaled by
    1/sqrt(eigenvalue), with their negatives (the fast CIFAR-10 trainers' first layer). The first layer then
    sees decorrelated, unit-variance inputs, which lets a short schedule use a high learning rate. The weights
    are set once by `fit_whitening` from training images and saved like any other; only the bias trains."""

    def __init__(self, channels, filters, kernel):
        super().__init__(channels, filters, kernel)
        self.weight.requires_grad_(False)


@torch.no_grad()
def fit_whitening(model: nn.Module, images: torch.Tensor, eps: float = 5e-4):
    """Set every Whiten layer from up to 5,000 training images (uint8 N x C x H x W), scaled as the model sees them."""
    for m in model.modules():
        if isinstance(m, Whiten):
            x = images[:5000].float() / 255
            k = m.kernel_size[0]
            patches = x.unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, m.in_channels * k * k)
            patches = patches - patches.mean(0)
            eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
            filters = eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]
            weight = torch.cat([filters, -filters]).reshape(m.weight.shape)
            m.weight.copy_(weight)  # copy_ keeps the layer's own memory layout (channels_last or not)


def from_state(state: dict, input_shape: tuple, num_classes: int, where) -> nn.Sequential:
    """Rebuild a saved model (its config's layers) and load its weights; a mismatch is the file's fault."""
    try:
        cfg = config.from_dict(state["config"])
        model, _ = build(cfg.layers, tuple(input_shape), num_classes, cfg.init)
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CnnlabError(f"{where} does not fit its model or data ({type(e).__name__}: {e})") from None
    return model


def uses_conv(model: nn.Module) -> bool:
    """Conv nets run in channels_last memory layout on CPU: faster, same numbers."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _keras_init(model: nn.Module, init: str):
    for m in model.modules():
        if isinstance(m, Whiten):
            nn.init.zeros_(m.bias)  # the weights come from the data (fit_whitening)
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            if init == "he_uniform":  # limit sqrt(6 / fan_in): keeps ReLU activations' variance layer to layer
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
            else:  # glorot_uniform, Keras' default: limit sqrt(6 / (fan_in + fan_out))
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
