"""Checkpoint files: tensors in safetensors, everything else as JSON in its header, written atomically.

No pickle anywhere, so opening a checkpoint someone handed you cannot run code. A nested state (model
weights, optimizer state, callback state, RNG state) is flattened: each tensor is stored under its path
("model/0.weight", "optimizer/state/3/exp_avg") and replaced by {"__tensor__": path} in the JSON tree.
A write goes to a temporary file in the same folder, is fsynced, then renamed over the target, so a
crash at any instant leaves either the old file or the new one, never half of one. A SHA-256 of the JSON and
tensor data is stored in the header and checked on load; `keep_previous` keeps the prior file as NAME.prev, which
`load_latest` falls back to when the newest is damaged.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from cnnlab.core import paths
from cnnlab.core.errors import CnnlabError

META_KEY = "cnnlab"


def _flatten(obj, path, tensors):
    if isinstance(obj, torch.Tensor):
        # a copy (safetensors refuses shared storage) on the CPU: a checkpoint holds no device
        tensors[path] = obj.detach().contiguous().to("cpu", copy=True)
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


def _digest(tensors: dict, tree_json: str) -> str:
    """SHA-256 over the JSON tree and every tensor's name, dtype, shape and bytes: any changed bit shows."""
    h = hashlib.sha256(tree_json.encode())
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def previous(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".prev")


def save(path: Path, state: dict, keep_previous: bool = False):
    path, tensors = Path(path), {}
    tree = json.dumps(_flatten(state, "", tensors))
    blob = st_save(tensors, metadata={META_KEY: tree, "sha256": _digest(tensors, tree)})
    atomic_write(path, blob, previous(path) if keep_previous else None)


def load(path: Path) -> dict:
    try:
        blob = paths.read_bytes(path, "checkpoint")
        tensors = st_load(blob)
        header_len = int.from_bytes(blob[:8], "little")
        meta = json.loads(blob[8:8 + header_len])["__metadata__"]
        if meta.get("sha256") != _digest(tensors, meta[META_KEY]):
            raise ValueError("checksum mismatch: the file was changed or damaged after saving")
        return _unflatten(json.loads(meta[META_KEY]), tensors)
    except CnnlabError:  # not a regular file
        raise
    except OSError as e:
        raise CnnlabError(f"cannot read checkpoint {path}: {e.strerror}") from None
    except (SafetensorError, ValueError, KeyError, TypeError) as e:
        raise CnnlabError(f"{path} is not a readable cnnlab checkpoint ({type(e).__name__}: {e})") from None


def load_latest(path: Path):
    """(state, warning) from `path`, or from its .prev when `path` is missing or damaged; (None, None) if neither
    exists. A damaged file is reported, never silently trusted."""
    path, prev = Path(path), previous(path)
    if not path.exists():
        return (load(prev), f"{path.name} is missing; resumed from {prev.name}") if prev.exists() else (None, None)
    try:
        return load(path), None
    except CnnlabError as damaged:
        if not prev.exists():
            raise
        return load(prev), f"{damaged}; resumed from the previous checkpoint {prev.name}"


def load_run_model(run_dir: Path, which: str = "best"):
    """(state, path, note) of a run's model: ModelCheckpoint's newest file, or last.pt (with a note saying why)."""
    run_dir = Path(run_dir)
    state, note = load_latest(run_dir / "last.pt")
    if state is None:
        raise CnnlabError(f"{run_dir} has no checkpoint (no last.pt): is it a run folder?")
    if which == "best":
        saved = state.get("callbacks", {}).get("ModelCheckpoint", {}).get("saved") or []
        if saved and (run_dir / saved[-1][1]).exists():
            return load(run_dir / saved[-1][1]), run_dir / saved[-1][1], note
        note = "ModelCheckpoint saved no file in this run; using the last weights"
    return state, run_dir / "last.pt", note


def step_back(path: Path) -> bool:
    """Put the save before `path` (NAME.prev) in its place, or remove `path` when there is none; True if one is
    left. For a resume point known to be bad (its weights diverged), which must not be resumed from."""
    path, prev = Path(path), previous(path)
    if prev.exists():
        os.replace(prev, path)
    else:
        path.unlink(missing_ok=True)
    _fsync_folder(path.parent)
    return path.exists()


def _fsync_folder(folder: Path):
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make renames in it durable
    finally:
        os.close(dir_fd)


def atomic_write(path: Path, data: bytes, keep_as: Path | None = None):
    """Write `data` to `path` all or nothing; with `keep_as`, the file it replaces is moved there first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; checkpoints are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if keep_as is not None and path.exists():
            os.replace(path, keep_as)  # a crash right here leaves only keep_as: load_latest falls back to it
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # a full disk, a read-only folder: the user can act on it
            raise CnnlabError(f"cannot write {path}: {e.strerror or e}; the previous version is untouched. "
                              f"Free space or fix the folder, then run the same command to resume") from None
        raise
    _fsync_folder(path.parent)
