"""Run configuration: plain dataclasses, read from presets, TOML files and `--set key=value`, written back as TOML.

Every hyperparameter of a run lives here, so a run's config.toml re-runs it exactly.
"""

import copy
import dataclasses
import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from cnnlab.core import paths, validation
from cnnlab.core.errors import CnnlabError


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # sgd | adam | adamw | rmsprop
    lr: float = 0.01
    momentum: float = 0.0  # sgd, rmsprop
    nesterov: bool = False  # sgd
    weight_decay: float = 0.0
    decay: float = 0.0  # Keras' legacy decay: lr_t = lr / (1 + decay * step)
    beta1: float = 0.9  # adam, adamw
    beta2: float = 0.999
    rho: float = 0.9  # rmsprop
    epsilon: float = 1e-7  # Keras' default, not PyTorch's 1e-8
    # Keras' use_ema: keep a moving average of the weights, ema = m * ema + (1 - m) * weights after every step.
    # The average is the model: validation scores it, checkpoints save it, the run ends with it.
    use_ema: bool = False
    ema_momentum: float = 0.99


@dataclass
class CheckpointConfig:  # ModelCheckpoint; `last.pt` for resuming is written every epoch regardless
    filepath: str = "best.pt"  # may contain {epoch}, e.g. "epoch{epoch:03d}.pt"
    monitor: str = "val_loss"
    mode: str = "auto"  # auto | min | max
    save_best_only: bool = True


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    monitor: str = "val_loss"
    min_delta: float = 0.0
    patience: int = 0
    mode: str = "auto"
    baseline: float | None = None
    restore_best_weights: bool = False
    start_from_epoch: int = 0


@dataclass
class ReduceLROnPlateauConfig:
    enabled: bool = False
    monitor: str = "val_loss"
    factor: float = 0.1
    patience: int = 10
    min_delta: float = 1e-4
    cooldown: int = 0
    min_lr: float = 0.0
    mode: str = "auto"


@dataclass
class AugmentConfig:
    flip: bool = False  # mirror each training image left-right with probability 1/2
    translate: int = 0  # shift each training image by up to this many pixels (reflected border)
    # Blur each training image with a Gaussian of random width, sigma uniform in [0, blur] pixels: the softening
    # that resizing gives a user's picture, which the model then learns to ignore.
    blur: float = 0.0


@dataclass
class Config:
    preset: str = ""
    layers: list = field(default_factory=list)  # model spec, see cnnlab.models
    init: str = "glorot_uniform"  # kernel initializer: glorot_uniform (Keras' default) | he_uniform
    dataset: str = "mnist"  # mnist | fashion-mnist | cifar10; ignored when `data` is set
    # A picture folder, .zip or .tar(.gz): train/<class>/ + test/<class>/, class folders alone, or a labels.csv
    # of path,label (data/folders.py); or four IDX files, a CIFAR tarball, a Keras-style .npz.
    data: str = ""
    # A picture folder's pictures, as the model sees them. image_size: [height, width] (an integer for a
    # square); empty keeps the one size every picture shares. crop_to_aspect_ratio: centre-crop each picture to
    # that aspect ratio before resizing instead of stretching it. color_mode: auto (grayscale only if every
    # picture is) | grayscale | rgb.
    image_size: list = field(default_factory=list)
    crop_to_aspect_ratio: bool = False
    color_mode: str = "auto"
    test_split: float = 0.2  # class folders or a labels file: each class's share held out as the test set
    strict: bool = False  # refuse a picture folder with an unreadable picture instead of skipping it
    # Keras' class_weight: each training image's loss weighted by its class. "" (equal), "auto" (inverse
    # frequency, scaled so the weights average 1 over the training images) or {class name or index = weight}.
    class_weight: str | dict = ""
    epochs: int = 5
    batch_size: int = 32
    seed: int = 0
    val_split: float = 0.1  # stratified hold-out of the training set
    validate_on: str = "val"  # val | test (test is what the lab did; flagged as optimistic)
    train_subset: int = 0  # > 0: train on a seeded random sample of this many images (quick runs, tests)
    test_subset: int = 0  # > 0: likewise for the test set
    threads: int = 0  # 0: one per available core
    # auto (a CUDA GPU, else Apple's MPS, else the CPU) | cpu | cuda | cuda:N | mps (core/devices.py)
    device: str = "auto"
    deterministic: bool = False  # CUDA: deterministic kernels, for bit-exact resume; slower (CPUs always are)
    channels_last: bool = True  # memory layout for conv nets: faster on CPU, same math
    # Training arithmetic: bf16 or fp16 autocast (weights, optimizer and loss stay float32; fp16 with a gradient
    # scaler) or plain fp32. auto: bf16 where the hardware computes it natively (CPUs with AVX512-BF16 or AMX,
    # where it is 1.3-1.9x faster; CUDA GPUs from Ampere), fp16 on Volta/Turing GPUs, fp32 elsewhere.
    # Evaluation, predict and export always run in fp32.
    precision: str = "auto"
    autosave_seconds: float = 60.0  # also save a mid-epoch resume point this often (0: at epoch ends only)
    tensorboard: bool = False  # also write TensorBoard event logs to <run>/tensorboard/{train,validation}
    label_smoothing: float = 0.0  # training targets (1 - s) on the class, s spread over all classes
    # constant: optimizer.lr throughout (with optimizer.decay and reduce_lr if set). onecycle: linear warm-up
    # from 0 to optimizer.lr over warmup_epochs, then linear decay to 0 at the last step.
    lr_schedule: str = "constant"
    warmup_epochs: float = 0.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    reduce_lr: ReduceLROnPlateauConfig = field(default_factory=ReduceLROnPlateauConfig)


def from_dict(d: dict, base: Config | None = None) -> Config:
    """Overlay a nested dict (from TOML or a preset) on `base`, checking every key and type."""
    cfg = copy.deepcopy(base) if base else Config()
    for k, v in d.items():
        set_value(cfg, k, v)
    return cfg


def set_value(cfg: Config, key: str, value):
    """Set a dotted key (`optimizer.lr`, `early_stopping.patience`, `epochs`); sections accept dicts."""
    obj, parts = cfg, key.split(".")
    for p in parts[:-1]:
        if not hasattr(obj, p) or not dataclasses.is_dataclass(getattr(obj, p)):
            raise CnnlabError(unknown_key(key, cfg))
        obj = getattr(obj, p)
    name = parts[-1]
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if name not in fields:
        raise CnnlabError(unknown_key(key, cfg))
    current = getattr(obj, name)
    if dataclasses.is_dataclass(current):
        if not isinstance(value, dict):
            raise CnnlabError(f"{key} is a section; give a table of keys")
        fresh = dataclasses.replace(current)
        setattr(obj, name, fresh)
        for k, v in value.items():
            set_value(cfg, f"{key}.{k}", v)
        return
    setattr(obj, name, validation.check_value(key, fields[name].type, value))


def unknown_key(key: str, cfg: Config) -> str:
    """The error for a mistyped key names the nearest real one, as git and pip do."""
    known = list(_all_keys(cfg)) + [f.name for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))]
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]!r}?" if near else "the keys are listed in cnnlab/core/config.py"
    return f"unknown config key {key!r}; {hint}"


def _all_keys(obj, prefix=""):
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            yield from _all_keys(v, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def parse_set(item: str):
    """`key=value` from the command line; the value is read as TOML (1e-3, true, "sgd"), else as a string."""
    if "=" not in item:
        raise CnnlabError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    except RecursionError:
        raise CnnlabError(f"--set {key.strip()}: the value is nested too deeply") from None
    return key.strip(), value


def load_toml(path: str) -> dict:
    if not Path(path).exists():
        raise CnnlabError(f"cannot read config {path}: no such file")
    try:
        return tomllib.loads(paths.read_text(path, "config"))
    except OSError as e:
        raise CnnlabError(f"cannot read config {path}: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CnnlabError(f"{path} is not valid TOML: {e}") from None
    except RecursionError:  # tomllib recurses once per nesting level
        raise CnnlabError(f"{path}: arrays or tables nested too deeply for a config") from None


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def to_toml(cfg: Config) -> str:
    """The config as TOML (tomli-w): scalars, then the layers, then one table per section. TOML has no null, so a
    key left at None (early_stopping.baseline) is left out, and reads back as None."""
    return tomli_w.dumps(_without_none(to_dict(cfg)))


def _without_none(v):
    if isinstance(v, dict):
        return {k: _without_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_without_none(x) for x in v]
    return v
