"""Checkpoint files: tensors in safetensors, everything else as JSON in its header, written atomically.

No pickle anywhere, so opening a checkpoint someone handed you cannot run code. A nested state (model
weights, optimizer state, callback state, RNG state) is flattened: each tensor is stored under its path
("model/0.weight", "optimizer/state/3/exp_avg") and replaced by {"__tensor__": path} in the JSON tree.
A write goes to a temporary file in the same folder, is fsynced, then renamed over the target, so a
crash at any instant leaves either the old file or the new one, never half of one.
"""

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from cnnlab import CnnlabError

META_KEY = "cnnlab"


def _flatten(obj, path, tensors):
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().contiguous().clone()  # clone: safetensors refuses shared storage
        return {"__tensor__": path}
    if isinstance(obj, dict):
        # JSON keys are strings; remember int keys (optimizer state is keyed by parameter index).
        return {"__dict__": [[k, _flatten(v, f"{path}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path} in a checkpoint")


def _unflatten(obj, tensors):
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save(path: Path, state: dict):
    tensors = {}
    tree = _flatten(state, "", tensors)
    blob = st_save(tensors, metadata={META_KEY: json.dumps(tree)})
    atomic_write(Path(path), blob)


def load(path: Path) -> dict:
    try:
        blob = Path(path).read_bytes()
        tensors = st_load(blob)
        header_len = int.from_bytes(blob[:8], "little")
        meta = json.loads(blob[8:8 + header_len])["__metadata__"][META_KEY]
        return _unflatten(json.loads(meta), tensors)
    except OSError as e:
        raise CnnlabError(f"cannot read checkpoint {path}: {e.strerror}") from None
    except (SafetensorError, ValueError, KeyError, TypeError) as e:
        raise CnnlabError(f"{path} is not a readable cnnlab checkpoint ({type(e).__name__}: {e})") from None


def atomic_write(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; checkpoints are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
