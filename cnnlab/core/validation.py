"""The config's rules: what each key takes (check_value, as a key is set) and the checks that need several
keys or a value's content (validate, before anything is loaded or deleted)."""

import math
from typing import TYPE_CHECKING

from cnnlab.core import devices
from cnnlab.core.errors import CnnlabError

if TYPE_CHECKING:  # config imports this module to check each key it sets
    from cnnlab.core.config import Config

CHOICES = {"optimizer.name": ("sgd", "adam", "adamw", "rmsprop"), "validate_on": ("val", "test"),
           "color_mode": ("auto", "grayscale", "rgb"),
           "precision": ("auto", "bf16", "fp16", "fp32"), "lr_schedule": ("constant", "onecycle"),
           "init": ("glorot_uniform", "he_uniform"),
           "checkpoint.mode": ("auto", "min", "max"), "early_stopping.mode": ("auto", "min", "max"),
           "reduce_lr.mode": ("auto", "min", "max")}
POSITIVE = {"epochs", "batch_size", "optimizer.lr", "reduce_lr.factor"}


def check_value(key: str, typ, value):
    """`value` for the config key `key` of type `typ`, or a CnnlabError saying what the key takes."""
    if key == "image_size":
        return _image_size(value)
    if key == "class_weight":
        return _class_weight(value)
    bad = CnnlabError(f"{key} must be {getattr(typ, '__name__', typ)}, got {value!r}")
    if typ in (float, float | None):
        if value is None and typ is not float:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        value = float(value)
        if value < 0 or (key in POSITIVE and value == 0):
            raise CnnlabError(f"{key} must be {'> 0' if key in POSITIVE else '>= 0'}, got {value}")
        if key in ("val_split", "test_split") and not value < 1:
            raise CnnlabError(f"{key} must be below 1, got {value}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (key in POSITIVE and value == 0):
            raise CnnlabError(f"{key} must be an integer {'> 0' if key in POSITIVE else '>= 0'}, got {value!r}")
        return value
    if typ in (bool, str, list):
        if not isinstance(value, typ):
            raise bad
        if key in CHOICES and value not in CHOICES[key]:  # every key with choices is a str
            raise CnnlabError(f"{key} must be one of {', '.join(CHOICES[key])}, got {value!r}")
        return value
    raise bad


def _image_size(value) -> list:
    """[height, width] from an integer (a square), [side] or [height, width]; [] for a folder's own size."""
    sides = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if value in (0, [], ()):
        return []
    if (not isinstance(sides, (list, tuple)) or len(sides) not in (1, 2)
            or not all(isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 4096 for v in sides)):
        raise CnnlabError(f"image_size must be a side or [height, width] of 8 to 4096 pixels, got {value!r}")
    return [sides[0], sides[-1]]


def _class_weight(value):
    if value in ("", "auto"):
        return value
    if not isinstance(value, dict) or not value:
        raise CnnlabError(f'class_weight must be "auto" or a table of class = weight, got {value!r}')
    out = {}
    for k, w in value.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w >= 0):
            raise CnnlabError(f"class_weight[{k!r}] must be a weight of 0 or more, got {w!r}")
        out[str(k)] = float(w)
    return out


RUN_FILES = {"last.pt", "last.pt.prev", "config.toml", "metrics.csv", "results.json", "curves.png", "skipped.txt",
             ".lock"}


def validate(cfg: "Config"):
    """Checks that need more than one key or a value's content; run before anything is loaded or deleted."""
    if cfg.seed >= 2**32:
        raise CnnlabError(f"seed must be below 2**32, got {cfg.seed}")
    if not 0 <= cfg.label_smoothing < 1:
        raise CnnlabError(f"label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if not 0 <= cfg.augment.translate <= 16:
        raise CnnlabError(f"augment.translate must be from 0 to 16 pixels, got {cfg.augment.translate}")
    if not cfg.augment.blur <= 1:  # the 5-tap filter holds a Gaussian out to 2 sigma at 1 pixel
        raise CnnlabError(f"augment.blur must be from 0 to 1 pixel, got {cfg.augment.blur}")
    if cfg.lr_schedule == "onecycle" and not 0 <= cfg.warmup_epochs < cfg.epochs:
        raise CnnlabError(f"warmup_epochs must be from 0 to below epochs ({cfg.epochs}), got {cfg.warmup_epochs}")
    if cfg.threads > 1024:
        raise CnnlabError(f"threads must be at most 1024, got {cfg.threads}")
    devices.check_name(cfg.device)
    o = cfg.optimizer
    for key in ("beta1", "beta2", "rho"):
        if not getattr(o, key) < 1:
            raise CnnlabError(f"optimizer.{key} must be below 1, got {getattr(o, key)}")
    if not o.ema_momentum < 1:
        raise CnnlabError(f"optimizer.ema_momentum must be below 1, got {o.ema_momentum}")
    if o.name == "sgd" and o.nesterov and o.momentum == 0:
        raise CnnlabError("optimizer.nesterov needs optimizer.momentum > 0")
    if cfg.reduce_lr.enabled and not cfg.reduce_lr.factor < 1:
        raise CnnlabError(f"reduce_lr.factor must be below 1, got {cfg.reduce_lr.factor}")
    logged = ["loss", "accuracy", "lr"]
    if cfg.validate_on == "test" or cfg.val_split > 0:
        logged += ["val_loss", "val_accuracy"]
    watched = [("checkpoint", cfg.checkpoint.save_best_only), ("early_stopping", cfg.early_stopping.enabled),
               ("reduce_lr", cfg.reduce_lr.enabled)]
    for section, active in watched:
        monitor = getattr(cfg, section).monitor
        if active and monitor not in logged:
            raise CnnlabError(f"{section}.monitor {monitor!r} is not a logged metric; choose one of {', '.join(logged)}")
    _check_checkpoint_name(cfg.checkpoint.filepath, logged)


def _check_checkpoint_name(pattern: str, logged: list):
    try:
        name = pattern.format(epoch=1, seconds=1.0, **{k: 0.5 for k in logged})
    except Exception as e:  # str.format can raise almost anything on a hostile pattern
        raise CnnlabError(f"checkpoint.filepath {pattern!r} is not a valid pattern ({type(e).__name__}: {e}); "
                          f"use fields like {{epoch:03d}} or {{val_loss:.3f}} from {', '.join(logged)}") from None
    if not name or "/" in name or "\\" in name or name.startswith(".") or name in RUN_FILES:
        raise CnnlabError(f"checkpoint.filepath must name a new file inside the run folder (not a path, a hidden "
                          f"file or one of {', '.join(sorted(RUN_FILES))}), got {pattern!r}")
