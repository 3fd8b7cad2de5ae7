"""The lab's four networks and training recipes, as plain config dicts (the same shape as a TOML file)."""

import copy
from pathlib import Path

from cnnlab.core import devices, paths
from cnnlab.core.config import Config, from_dict, load_toml, set_value
from cnnlab.core.errors import CnnlabError
from cnnlab.core.validation import validate
from cnnlab.data.sources import BUILTIN, canonical_name, jpeg_copy
from cnnlab.models import specs


def conv(filters, kernel, padding="same"):
    return {"type": "conv2d", "filters": filters, "kernel": kernel, "padding": padding, "activation": "relu"}


def dense(units, activation="relu"):
    return {"type": "dense", "units": units, "activation": activation}


MAXPOOL = {"type": "maxpool", "size": 2, "stride": 2}
FLATTEN = {"type": "flatten"}
BATCHNORM = {"type": "batchnorm"}
LOGITS = {"type": "dense", "units": "classes"}  # softmax is folded into the cross-entropy loss


def dropout(rate):
    return {"type": "dropout", "rate": rate}


PRESETS = {
    # Lab section 3.2: one hidden layer of 1024 on flattened CIFAR-10 (32*32*3 = 3072 inputs), `SGD()`.
    "mlp": {
        "dataset": "cifar10", "epochs": 50, "batch_size": 128,
        "layers": [FLATTEN, dense(1024), LOGITS],
        "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.0},
        "checkpoint": {"save_best_only": False},  # no ModelCheckpoint in the lab: its model is the last epoch's
    },
    # Lab section 3.3: deeper and narrowing, Adam, twice the epochs.
    "mlp-deep": {
        "dataset": "cifar10", "epochs": 100, "batch_size": 128,
        "layers": [FLATTEN, dense(1024), dense(512), dense(256), LOGITS],
        "optimizer": {"name": "adam", "lr": 1e-3},
        "checkpoint": {"save_best_only": False},
    },
    # Lab sections 4.2-4.4: the MNIST CNN, 5 epochs, ModelCheckpoint(model_name) saving every epoch.
    "mnist-cnn": {
        "dataset": "mnist", "epochs": 5, "batch_size": 32,
        "layers": [conv(32, 5), MAXPOOL, conv(64, 5, "valid"), conv(128, 5, "valid"), conv(64, 5, "valid"),
                   MAXPOOL, FLATTEN, dense(1024), dropout(0.1), LOGITS],
        "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.7},
        "early_stopping": {"enabled": True, "monitor": "val_loss", "min_delta": 0.001, "patience": 10},
        "checkpoint": {"save_best_only": False},
    },
    # Lab section 5: three VGG-style blocks with BatchNorm and dropout, early stopping that keeps the best.
    "cifar-cnn": {
        "dataset": "cifar10", "epochs": 100, "batch_size": 64, "val_split": 0.2,
        "layers": [conv(32, 3), BATCHNORM, conv(32, 3), BATCHNORM, MAXPOOL, dropout(0.3),
                   conv(64, 3), BATCHNORM, conv(64, 3), BATCHNORM, MAXPOOL, dropout(0.5),
                   conv(128, 3), BATCHNORM, conv(128, 3), BATCHNORM, MAXPOOL, dropout(0.5),
                   FLATTEN, dense(128), BATCHNORM, dropout(0.5), LOGITS],
        "optimizer": {"name": "adam", "lr": 1e-3},
        "early_stopping": {"enabled": True, "monitor": "val_loss", "patience": 10, "restore_best_weights": True},
        "checkpoint": {"save_best_only": True, "monitor": "val_loss"},
        # precision: auto, as every preset (bf16 on CPUs that compute it natively). Measured, 10 epochs on the
        # CIFAR-10 JPEG copy, seeds 0-2: bf16 0.7534 0.7587 0.7648, fp32 0.7479 0.7429 0.7687 (README, Speed).
    },
}

def conv_group(width):
    """The fast CIFAR-10 trainers' block: conv, pool, BatchNorm, GELU, conv, BatchNorm, GELU (biases dropped:
    each BatchNorm has its own)."""
    conv_ = {"type": "conv2d", "filters": width, "kernel": 3, "padding": "same", "bias": False}
    bn = {"type": "batchnorm", "momentum": 0.9}  # Keras' meaning; a short run needs statistics that keep up
    gelu = {"type": "activation", "name": "gelu"}
    return [conv_, MAXPOOL, bn, gelu, conv_, bn, gelu]


# Not from the lab: the fastest way cnnlab knows to a good CIFAR-10 model on a CPU, after the published fast
# trainers (Page's DAWNBench ResNet, Keller Jordan's airbench): a frozen patch-whitening first layer, three
# conv groups 64/256/256, label smoothing, flip, 2-pixel translate and a light blur, a one-cycle learning rate,
# a moving average of the weights, and the logits averaged over each test image and its mirror. All 50,000
# training images train (no hold-out).
PRESETS["cifar-fast"] = {
    "dataset": "cifar10", "epochs": 18, "batch_size": 512, "val_split": 0.0,
    "layers": [{"type": "flip_tta"}, {"type": "whiten", "kernel": 2}, {"type": "activation", "name": "gelu"},
               *conv_group(64), *conv_group(256), *conv_group(256),
               {"type": "maxpool", "size": 3}, FLATTEN, LOGITS],
    # Weights averaged over about the last 50 steps (ema 0.98): measured on the CIFAR-10 JPEG copy, the average
    # crossed 0.90 test accuracy at epoch 15 (the plain weights of an earlier run at 17) and ended at 0.9047
    # against 0.9033 for the same run's last weights.
    "optimizer": {"name": "sgd", "lr": 0.4, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
                  "use_ema": True, "ema_momentum": 0.98},
    "lr_schedule": "onecycle", "warmup_epochs": 3.5, "label_smoothing": 0.2,
    # blur: each training image softened by a Gaussian of random sigma up to 0.8 px, as shrinking a user's
    # bigger picture softens it. Measured on 1,000 test images upscaled to 256x256 JPEGs and shrunk back by
    # predict: the model kept its in-memory answer on 997 of them (992 without blur), with the same test
    # accuracy (0.9036 vs 0.9047 without).
    "augment": {"flip": True, "translate": 2, "blur": 0.8},
    "checkpoint": {"save_best_only": False},  # the schedule's last weights are the model: no best to pick
}

# Not from the lab: for a user's own pictures, at any size from 32 to 224 pixels. Residual blocks (He et al.
# 2016) keep a deeper net trainable, each stride-2 block halves the map, and global average pooling makes the
# classifier the same 256 x classes whatever the picture's size: the lab's Flatten + Dense grows with it.
PRESETS["small-cnn"] = {
    "dataset": "cifar10", "epochs": 20, "batch_size": 64, "init": "he_uniform",
    "layers": [{"type": "conv2d", "filters": 32, "kernel": 3, "padding": "same", "bias": False}, BATCHNORM,
               {"type": "activation", "name": "relu"},
               {"type": "residual", "filters": 32}, {"type": "residual", "filters": 64, "stride": 2},
               {"type": "residual", "filters": 128, "stride": 2}, {"type": "residual", "filters": 256, "stride": 2},
               {"type": "global_avgpool"}, dropout(0.2), LOGITS],
    "optimizer": {"name": "adam", "lr": 2e-3},
    "augment": {"flip": True, "translate": 2},
    "early_stopping": {"enabled": True, "monitor": "val_loss", "patience": 5, "restore_best_weights": True},
}

DESCRIPTIONS = {
    "mlp": "3072-1024-10 dense net, SGD 0.01 (Keras' SGD(): no momentum), batch 128, 50 epochs (CIFAR-10)",
    "mlp-deep": "3072-1024-512-256-10 dense net, Adam 1e-3, batch 128, 100 epochs (CIFAR-10)",
    "mnist-cnn": "conv 5x5 32/64/128/64 + dense 1024, SGD 0.01 momentum 0.7, batch 32, 5 epochs, early stopping "
                 "min_delta 0.001 patience 10 (MNIST)",
    "cifar-cnn": "3 blocks of 3x3 convs 32/64/128 + BatchNorm + dropout, Adam 1e-3, batch 64, "
                 "early stopping patience 10 with best weights restored, 20% validation (CIFAR-10)",
    "cifar-fast": "whitening + conv groups 64/256/256, SGD nesterov one-cycle 0.4, weight EMA 0.98, label "
                  "smoothing 0.2, flip/translate/blur, flip TTA, batch 512, 18 epochs (CIFAR-10, all 50k train)",
    "small-cnn": "for your own pictures at 32-224 px: conv 32 + residual blocks 32/64/128/256 + global average "
                 "pooling, Adam 2e-3, flip/translate, early stopping patience 5 (use with --data FOLDER --image-size)",
}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise CnnlabError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)} or give a .toml file")
    return from_dict({**PRESETS[name], "preset": name})


def resolve(target, overrides: dict | None = None, data_dir: str | None = None) -> tuple:
    """(config, default run-folder name) from a preset's name, a .toml file (whose `preset` key it starts from)
    or a Config, with `overrides` (dotted keys, `optimizer.lr`, or `optimizer__lr` as a Python keyword) on top;
    checked once, here, before anything is loaded or deleted."""
    if isinstance(target, Config):
        cfg, stem = copy.deepcopy(target), target.preset or "custom"
    elif not isinstance(target, str):
        raise CnnlabError(f"expected a preset's name, a .toml file or a Config, got {type(target).__name__}")
    elif target.endswith(".toml"):
        d = load_toml(target)
        name = d.pop("preset", "")
        if not isinstance(name, str):
            raise CnnlabError(f"{target}: preset must be a preset's name, got {name!r}")
        cfg = from_dict(d, preset(name) if name else None)
        cfg.preset, stem = name, Path(target).stem
    else:
        cfg, stem = preset(target), target
    for key, value in (overrides or {}).items():
        set_value(cfg, key.replace("__", "."), value)
    if (overrides or {}).get("dataset"):
        cfg.data = ""  # naming a built-in data set replaces a --data path
    if not cfg.data:
        cfg.dataset = canonical_name(cfg.dataset)
    if cfg.data and Path(cfg.data).exists():  # a run folder works from any folder, so it names its data absolutely
        cfg.data = str(paths.file_or_folder(cfg.data, "--data").resolve())
    if not cfg.data and cfg.dataset == "cifar10" and jpeg_copy(data_dir):
        cfg.data = str(jpeg_copy(data_dir))  # the genuine set is not here: the copy, named as such everywhere
    validate(cfg)
    devices.resolve(cfg.device)  # here, so a device that is not here stops before anything starts
    return cfg, run_name(cfg, stem)


def run_name(cfg: Config, stem: str) -> str:
    """The preset, plus the data set when it is not the preset's own."""
    if cfg.data:
        return f"{stem}-{Path(cfg.data.rstrip('/')).name.split('.')[0]}"
    if cfg.preset in PRESETS and cfg.dataset != PRESETS[cfg.preset]["dataset"]:
        return f"{stem}-{cfg.dataset}"
    return stem


BUILTIN_SHAPES = {name: spec["shape"] for name, spec in BUILTIN.items()}
MAX_PRESET_PARAMS = 50_000_000  # mlp at 224x224 would be 154M: a dense net's first layer grows with the picture


def build_model(cfg: Config, input_shape: tuple, num_classes: int):
    """specs.build, saying what to use instead when a preset's network does not fit the pictures' size."""
    native = BUILTIN_SHAPES.get(PRESETS.get(cfg.preset, {}).get("dataset"))
    resized = native is not None and tuple(input_shape[1:]) != native[1:]
    hint = (f"; {cfg.preset} was made for {native[1]}x{native[2]} pictures: use --image-size {native[1]}, or the "
            f"small-cnn preset (global average pooling: the same 1.2M parameters at any size from 32 to 224)"
            if resized else "")
    try:
        model, infos = specs.build(cfg.layers, tuple(input_shape), num_classes, cfg.init)
    except CnnlabError as e:
        raise CnnlabError(f"{e}{hint}") from None
    params = sum(i.params for i in infos)
    if resized and params > MAX_PRESET_PARAMS:
        raise CnnlabError(f"{cfg.preset} at {input_shape[1]}x{input_shape[2]} would have {params:,} parameters, "
                          f"most in the Dense after its Flatten{hint}")
    return model, infos
