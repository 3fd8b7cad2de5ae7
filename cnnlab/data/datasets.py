"""Data sets in memory: a named one through its source chain (sources.py) or a user's folder or archive,
decoded once and cached.

Decoded arrays (uint8 images, int64 labels) are cached as .npy files, keyed by the source files' paths, sizes
and mtimes, so the next load skips decompression, hashing and parsing.
"""

import hashlib
import json
import lzma
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from cnnlab.core import paths
from cnnlab.core.errors import CnnlabError
from cnnlab.data import formats, sources
from cnnlab.data.arrays import read_npz
from cnnlab.data.sources import BUILTIN, canonical_name, describe_all  # noqa: F401  (the data sets' public names)


@dataclass
class Split:
    x: torch.Tensor  # uint8, N x C x H x W: converted to float one batch at a time
    y: torch.Tensor  # int64 class indices

    def __len__(self):
        return len(self.y)


@dataclass
class Dataset:
    name: str
    classes: list
    train: Split
    test: Split
    source: str  # where the files were found, for the user and the run's record
    verified: bool  # matched the published digests
    tried: list = field(default_factory=list)
    cached_to: str = ""  # set when this load decoded the files and cached the arrays there

    @property
    def input_shape(self):
        return tuple(self.train.x.shape[1:])


def load(name: str | None = None, data: str | None = None, data_dir: str | None = None) -> Dataset:
    """Load a named data set through its source chain, or a user's folder/archive given by `data`."""
    if data:
        return _load_path(Path(data))
    name = sources.canonical_name(name)
    files, source, tried = sources.locate(name, data_dir, allow_fetch=True)
    if files is None:
        raise CnnlabError(f"{name}: no source worked (tried: {'; '.join(tried)}). Put the files in a folder and pass "
                          f"--data-dir DIR or set CNNLAB_DATA=DIR")
    return _decode_cached(name, files, source, tried, lambda: (*_parse_builtin(name, files), source))


def _parse_builtin(name: str, files):
    sources.check_digests(name, files)
    if name == "cifar10":
        train, test, classes = formats.read_cifar_tarball(files[0])
    else:
        arrays = [formats.parse_idx(formats.read_maybe_gzip(p), p.name) for p in files]
        train = formats.idx_images_and_labels(arrays[0], arrays[1], files[0].name)
        test = formats.idx_images_and_labels(arrays[2], arrays[3], files[2].name)
        classes = sources.BUILTIN[name]["classes"]
    return train, test, classes, True


def _load_path(path: Path) -> Dataset:
    """A user's data: a folder of the four IDX files, a CIFAR-format tarball, or an image folder/archive.
    The decoded cache is checked first: telling the formats apart means opening the archive."""
    if not path.exists():
        raise CnnlabError(f"--data {path}: no such file or folder")
    paths.file_or_folder(path, "--data")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return _decode_cached(path.name.split(".")[0], files, None, [], lambda: _parse_path(path))


def _parse_path(path: Path):
    idx_files = sources.find_files(path, sources.IDX_FILES) if path.is_dir() else None
    if idx_files:  # e.g. EMNIST or a user's own digits
        arrays = [formats.parse_idx(formats.read_maybe_gzip(p), p.name) for p in idx_files]
        tr, te = (formats.idx_images_and_labels(arrays[i], arrays[i + 1], idx_files[i].name) for i in (0, 2))
        labels = np.concatenate([tr[1], te[1]])
        classes = [str(c) for c in range(int(labels.max()) + 1 if len(labels) else 0)]
        return tr, te, classes, False, f"IDX files in {path}"
    if path.is_file() and path.suffix == ".npz":
        return (*read_npz(path), False, f"arrays {path}")
    if path.is_file() and tarfile.is_tarfile(path) and _is_cifar_tarball(path):
        return (*formats.read_cifar_tarball(path), False, f"CIFAR tarball {path}")
    return (*formats.read_image_folder(path), False, f"image folder {path}")


def _is_cifar_tarball(path: Path) -> bool:
    try:
        with tarfile.open(path, "r|*") as tar:  # streamed: stops at the first batches.meta
            return any(PurePosixPath(m.name).name == "batches.meta" for m in tar)
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError):
        return False


DECODER_VERSION = 3  # bump when decoding changes what arrays a file gives (2: Lanczos when shrinking; 3: an
# enlarged picture is shrunk to its values at the small grid's pixel centres)


def _decode_cached(name, files, source, tried, parse) -> Dataset:
    """Reuse decoded arrays when the source files are unchanged (same paths, sizes, mtimes)."""
    stamp = json.dumps([[str(Path(f).resolve()), os.stat(f).st_size, os.stat(f).st_mtime_ns] for f in files]
                       + [DECODER_VERSION])
    folder = sources.cache_root() / "decoded" / hashlib.sha256(stamp.encode()).hexdigest()[:20]
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            arrays = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in ("train_x", "train_y", "test_x", "test_y")}
            return _dataset(name, meta["classes"], arrays, meta["source"] + " (decoded cache)", meta["verified"], tried)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    (trx, try_), (tex, tey), classes, verified, found = parse()
    source = source or found
    if len(trx) == 0 or (len(tex) == 0 and not found.startswith("arrays")):
        raise CnnlabError(f"{name}: the {'training' if len(trx) == 0 else 'test'} set is empty ({source})")
    arrays = {"train_x": trx, "train_y": try_, "test_x": tex, "test_y": tey}
    _store(folder, arrays, {"classes": classes, "verified": verified, "source": source})
    ds = _dataset(name, classes, arrays, source, verified, tried)
    ds.cached_to = str(folder) if folder.is_dir() else ""
    return ds


def _store(folder: Path, arrays: dict, meta: dict):
    """Best effort: a read-only or full cache, or another process caching the same data, only costs speed."""
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(dir=sources.mkdir(folder.parent)))
        for k, v in arrays.items():
            np.save(tmp / f"{k}.npy", np.ascontiguousarray(v))
        (tmp / "meta.json").write_text(json.dumps(meta))
        shutil.rmtree(folder, ignore_errors=True)  # a damaged entry, if any
        os.replace(tmp, folder)  # atomic; if another process won the race, its copy is as good
    except OSError:
        pass
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _dataset(name, classes, a, source, verified, tried) -> Dataset:
    def t(v):
        return torch.from_numpy(np.array(v))  # one copy out of the memory map into a writable tensor
    return Dataset(name, list(classes), Split(t(a["train_x"]), t(a["train_y"])),
                   Split(t(a["test_x"]), t(a["test_y"])), source, verified, tried)


def folder_bytes(folder) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def cache_usage() -> tuple:
    """(the cache folder, {"decoded": bytes, "downloads": bytes}) for `cnnlab cache`."""
    root = sources.cache_root()
    return root, {part: folder_bytes(root / part) for part in ("decoded", "downloads")}


def clear_decoded_cache() -> int:
    """Delete the decoded arrays (they are rebuilt from the files on the next load); the bytes freed."""
    decoded = sources.cache_root() / "decoded"
    freed = folder_bytes(decoded)
    shutil.rmtree(decoded, ignore_errors=True)
    return freed


def fingerprint(path) -> str:
    """A data file's SHA-256; a folder's, of its files' relative paths and sizes (cheap for big photo folders).
    Recorded with a run, it lets a moved data set be found again."""
    path, h = Path(path), hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    else:
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path)}\0{f.stat().st_size}\n".encode())
    return h.hexdigest()


def find_moved(path: Path, digest: str, search: list) -> Path | None:
    """Where data that was at `path` went: an entry of the same name in one of the `search` folders, or one level
    below them, with the recorded fingerprint."""
    for folder in map(Path, search):
        for candidate in [folder / path.name, *folder.glob(f"*/{path.name}")]:
            if (candidate.is_file() or candidate.is_dir()) and fingerprint(candidate) == digest:
                return candidate.resolve()
    return None
