"""Images and labels handed over as arrays (numpy or torch, Keras' layouts), and the .npz file that keeps them:
Keras' mnist.npz layout, x_train, y_train, x_test, y_test."""

import zipfile
from pathlib import Path

import numpy as np
import torch

from cnnlab.core.errors import CnnlabError


def images_from_array(x, name: str = "images") -> np.ndarray:
    """Any batch of images as uint8 N x C x H x W: N x H x W (grayscale), N x H x W x C (Keras' channels-last)
    or N x C x H x W; floats in [0, 1] (the lab's x / 255) or [0, 255], or uint8."""
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise CnnlabError(f"{name}: expected N x H x W or N x H x W x C images, got shape {x.shape}")
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # channels last, as Keras holds them
    if x.shape[1] not in (1, 3):
        raise CnnlabError(f"{name}: images need 1 or 3 channels, got shape {x.shape}")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.number) or (x.size and not np.isfinite(x).all()):
            raise CnnlabError(f"{name}: pixels must be finite numbers, got dtype {x.dtype}")
        scale = 255.0 if x.size and np.issubdtype(x.dtype, np.floating) and x.max() <= 1.0 else 1.0
        x = np.clip(np.rint(x * scale), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x)


def labels_from_array(y, n: int, name: str = "labels") -> np.ndarray:
    """Class indices 0..K-1 as int64; one-hot rows (Keras' to_categorical) are turned back into indices."""
    y = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(1)
    y = y.reshape(-1)
    if len(y) != n:
        raise CnnlabError(f"{name}: {len(y)} labels for {n} images")
    if not np.issubdtype(y.dtype, np.integer) and not (np.issubdtype(y.dtype, np.floating) and (y == np.rint(y)).all()):
        raise CnnlabError(f"{name}: labels must be whole class numbers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise CnnlabError(f"{name}: labels must be 0 or more, got {y.min()}")
    return y


def read_npz(path: Path):
    """Keras' mnist.npz layout: x_train, y_train, x_test, y_test (and optionally `classes`). No pickle is loaded.
    An empty test split is allowed: a run trained from arrays without validation_data has none."""
    try:
        with np.load(path, allow_pickle=False) as f:
            a = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CnnlabError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    missing = [k for k in ("x_train", "y_train") if k not in a]
    if missing:
        raise CnnlabError(f"{path}: no {', '.join(missing)} (expected x_train, y_train, x_test, y_test)")
    trx = images_from_array(a["x_train"], f"{path} x_train")
    tex = images_from_array(a.get("x_test", trx[:0]), f"{path} x_test")
    if tex.shape[1:] != trx.shape[1:] and len(tex):
        raise CnnlabError(f"{path}: x_test images are {tex.shape[1:]}, x_train's {trx.shape[1:]}")
    train = trx, labels_from_array(a["y_train"], len(trx), f"{path} y_train")
    test = tex.reshape(-1, *trx.shape[1:]), labels_from_array(a.get("y_test", np.zeros(0, np.int64)), len(tex),
                                                              f"{path} y_test")
    k = int(max(train[1].max(initial=0), test[1].max(initial=0))) + 1
    classes = [str(c) for c in a["classes"].tolist()] if "classes" in a else [str(i) for i in range(k)]
    if len(classes) < k:
        raise CnnlabError(f"{path}: labels go up to {k - 1} but only {len(classes)} class names are given")
    return train, test, classes
