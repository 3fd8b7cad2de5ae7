"""Classify a user's own pictures with a trained model: the same preprocessing as training, top-k classes.

A model is a run folder (its ModelCheckpoint file, else last.pt) or any checkpoint file cnnlab wrote: the
safetensors weights carry the config (architecture), class names and input shape, so nothing else is needed.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import ImageOps

from cnnlab.core import checkpoints, paths
from cnnlab.core.errors import CnnlabError, one_line
from cnnlab.data import pictures
from cnnlab.models import inference, specs


def load_model(path: Path):
    """(model in eval mode, about) from a run folder or a checkpoint file."""
    model, about, _ = load_model_and_config(path)
    return model, about


def load_model_and_config(path: Path):
    """(model in eval mode, about, the config it was trained with as a dict) from a run folder or checkpoint."""
    path = Path(path)
    if path.is_dir():
        state, _, _ = checkpoints.load_run_model(path)
    elif path.is_file():
        state = checkpoints.load(path)
    else:
        raise CnnlabError(f"{path}: no such run folder or model file")
    about = state.get("about") or {}
    if not about.get("classes") or not about.get("input_shape"):
        raise CnnlabError(f"{path} does not record its classes and input shape (saved by an older cnnlab)")
    model = specs.from_state(state, about["input_shape"], len(about["classes"]), path)
    return model.eval(), about, state.get("config") or {}


def prepare(picture, input_shape, crop: bool = False, name: str = "image") -> torch.Tensor:
    """A picture (a file's bytes, or a PIL image) -> uint8 C x H x W as the model saw in training: a file goes
    through the very function that decoded the training folder (pictures.prepare: orientation, colour, size,
    crop); for single-channel models, the MNIST convention of a light digit on a dark ground."""
    channels, height, width = input_shape
    if isinstance(picture, (bytes, bytearray)):
        x = pictures.prepare(bytes(picture), name, (width, height), channels, crop)
    else:
        img = ImageOps.exif_transpose(picture)
        x = pictures.as_array(pictures.fit(pictures.to_mode(img, channels), (width, height), crop), channels)
    x = torch.from_numpy(np.ascontiguousarray(x))
    if channels == 1 and _border_mean(x) > 127:  # dark ink on light paper: invert to MNIST's white-on-black
        x = 255 - x
    return x.contiguous()


def _border_mean(x: torch.Tensor) -> float:
    edge = torch.cat([x[:, 0, :].flatten(), x[:, -1, :].flatten(), x[:, :, 0].flatten(), x[:, :, -1].flatten()])
    return edge.float().mean().item()


def classify(model, about: dict, images: list, k: int = 3) -> list:
    """top_k's answer for each of a batch of pictures (PIL images or files' bytes), in one pass of the model."""
    crop = about.get("crop_to_aspect_ratio", False)
    x = torch.stack([prepare(img, about["input_shape"], crop) for img in images])
    return [top_k(p, about["classes"], k) for p in inference.probabilities(model, x)]


def top_k(probs: torch.Tensor, classes: list, k: int) -> list:
    """A picture's probabilities as its k most likely classes, most likely first, as predict --json and serve
    answer: [{"class", "probability"}], probabilities to 6 decimals."""
    top = probs.topk(min(k, len(probs)))
    return [{"class": classes[i], "probability": round(p, 6)} for i, p in zip(top.indices.tolist(), top.values.tolist())]


def classify_files(model, about: dict, files: list, k: int = 3) -> list:
    """{"file", "top": [{"class", "probability"}]} per file, or {"file", "error"}: one at a time, so a broken
    file costs only its own entry."""
    if not files:
        raise CnnlabError(f"no images given (files or folders of {', '.join(sorted(pictures.SUFFIXES))})")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise CnnlabError(f"top-k must be a whole number of at least 1, got {k!r}")
    results = []
    for f in files:
        try:
            x = prepare(paths.read_bytes(f, "image"), about["input_shape"], about.get("crop_to_aspect_ratio", False),
                        str(f))
            results.append({"file": str(f), "top": top_k(inference.probabilities(model, x[None])[0], about["classes"], k)})
        except (CnnlabError, OSError) as e:
            results.append({"file": str(f), "error": one_line(e).removeprefix(f"{f}: ")})
    return results


def expand(named) -> list:
    """Files as given; folders become the images inside them, sorted."""
    out = []
    for p in map(Path, named):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in pictures.SUFFIXES)
        else:  # a missing file gets its own error entry; a FIFO or device named here stops the command
            out.append(paths.regular_file(p, "image") if p.exists() else p)
    return out
