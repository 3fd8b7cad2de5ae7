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
from cnnlab.data import folders, formats, sources
from cnnlab.data.arrays import read_npz
from cnnlab.data.folders import PictureOptions
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
    val: Split | None = None  # a picture folder's own val/ or validation/ pictures
    layout: str = ""  # a picture folder's: train/test folders, class folders or labels file
    ignored: int = 0  # a picture folder's hidden, non-picture or unlabelled files
    skipped: list = field(default_factory=list)  # [name, reason] of pictures that could not be decoded

    @property
    def input_shape(self):
        return tuple(self.train.x.shape[1:])


def load(name: str | None = None, data: str | None = None, data_dir: str | None = None,
         pictures: PictureOptions | None = None) -> Dataset:
    """Load a named data set through its source chain, or a user's folder/archive given by `data` (a picture
    folder read with `pictures`)."""
    if data:
        return _load_path(Path(data), pictures or PictureOptions())
    name = sources.canonical_name(name)
    files, source, tried = sources.locate(name, data_dir, allow_fetch=True)
    if files is None:
        raise CnnlabError(f"{name}: no source worked (tried: {'; '.join(tried)}). Put the files in a folder and pass "
                          f"--data-dir DIR or set CNNLAB_DATA=DIR")
    return _decode_cached(name, files, [], lambda: _parse_builtin(name, files, source), tried)


def _parse_builtin(name: str, files, source):
    sources.check_digests(name, files)
    if name == "cifar10":
        train, test, classes = formats.read_cifar_tarball(files[0])
    else:
        arrays = [formats.parse_idx(formats.read_maybe_gzip(p), p.name) for p in files]
        train = formats.idx_images_and_labels(arrays[0], arrays[1], files[0].name)
        test = formats.idx_images_and_labels(arrays[2], arrays[3], files[2].name)
        classes = sources.BUILTIN[name]["classes"]
    return _split_arrays(train, test), {"classes": classes, "verified": True, "source": source}


def _split_arrays(train, test, val=None) -> dict:
    arrays = {"train_x": train[0], "train_y": train[1], "test_x": test[0], "test_y": test[1]}
    if val is not None:
        arrays.update(val_x=val[0], val_y=val[1])
    return arrays


def _load_path(path: Path, opts: PictureOptions) -> Dataset:
    """A user's data: a folder of the four IDX files, a CIFAR-format tarball, or a picture folder/archive.
    The decoded cache is checked first: telling the formats apart means opening the archive."""
    if not path.exists():
        raise CnnlabError(f"--data {path}: no such file or folder")
    paths.file_or_folder(path, "--data")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    # The picture options change what a folder decodes to; a train/test layout has no hold-out to seed.
    settings = [list(opts.image_size), opts.crop_to_aspect_ratio, opts.color_mode, opts.strict]
    if not folders.in_split_folders(path, files):
        settings += [opts.test_split, opts.seed]
    return _decode_cached(path.name.split(".")[0], files, settings, lambda: _parse_path(path, opts))


def _parse_path(path: Path, opts: PictureOptions):
    idx_files = sources.find_files(path, sources.IDX_FILES) if path.is_dir() else None
    meta = {"verified": False}
    if idx_files:  # e.g. EMNIST or a user's own digits
        arrays = [formats.parse_idx(formats.read_maybe_gzip(p), p.name) for p in idx_files]
        tr, te = (formats.idx_images_and_labels(arrays[i], arrays[i + 1], idx_files[i].name) for i in (0, 2))
        labels = np.concatenate([tr[1], te[1]])
        classes = [str(c) for c in range(int(labels.max()) + 1 if len(labels) else 0)]
        return _split_arrays(tr, te), {**meta, "classes": classes, "source": f"IDX files in {path}"}
    if path.is_file() and path.suffix == ".npz":
        tr, te, classes = read_npz(path)
        return _split_arrays(tr, te), {**meta, "classes": classes, "source": f"arrays {path}", "may_lack_test": True}
    if path.is_file() and tarfile.is_tarfile(path) and _is_cifar_tarball(path):
        tr, te, classes = formats.read_cifar_tarball(path)
        return _split_arrays(tr, te), {**meta, "classes": classes, "source": f"CIFAR tarball {path}"}
    found = folders.read(path, opts)
    a = found.arrays
    empty = (np.zeros((0, *a["train"][0].shape[1:]), np.uint8), np.zeros(0, np.int64)) if "train" in a else None
    arrays = _split_arrays(a.get("train", empty), a.get("test", empty), a.get("val"))
    return arrays, {**meta, "classes": found.classes, "source": f"picture folder {path} ({found.layout})",
                    "layout": found.layout, "may_lack_test": opts.test_split == 0, "ignored": found.ignored,
                    "skipped": [list(s) for s in found.skipped]}


def _is_cifar_tarball(path: Path) -> bool:
    try:
        with tarfile.open(path, "r|*") as tar:  # streamed: stops at the first batches.meta
            return any(PurePosixPath(m.name).name == "batches.meta" for m in tar)
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError):
        return False


DECODER_VERSION = 5  # bump when decoding changes what arrays a file gives: cached arrays of another version are
# decoded again
KEYS = ("train_x", "train_y", "test_x", "test_y")


def _decode_cached(name, files, settings, parse, tried=()) -> Dataset:
    """Reuse decoded arrays when the source files (same paths, sizes, mtimes) and settings are unchanged."""
    stamp = json.dumps([[str(Path(f).resolve()), os.stat(f).st_size, os.stat(f).st_mtime_ns] for f in files]
                       + [DECODER_VERSION, settings])
    folder = sources.cache_root() / "decoded" / hashlib.sha256(stamp.encode()).hexdigest()[:20]
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            keys = KEYS + (("val_x", "val_y") if meta.get("val") else ())
            arrays = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in keys}
            return _dataset(name, arrays, {**meta, "source": meta["source"] + " (decoded cache)"}, tried, copy=True)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    arrays, meta = parse()
    if len(arrays["train_x"]) == 0 or (len(arrays["test_x"]) == 0 and not meta.pop("may_lack_test", False)):
        raise CnnlabError(f"{name}: the {'training' if len(arrays['train_x']) == 0 else 'test'} set is empty "
                          f"({meta['source']})")
    meta["val"] = "val_x" in arrays
    _store(folder, arrays, meta)
    ds = _dataset(name, arrays, meta, tried, copy=False)
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


def _dataset(name, a, meta, tried, copy: bool) -> Dataset:
    """Tensors over the arrays: copied out of a cache's memory map, shared with freshly decoded ones (a second
    copy of a big picture folder would double its memory)."""
    def t(v):
        return torch.from_numpy(np.array(v) if copy or not v.flags.writeable else np.ascontiguousarray(v))

    def split(prefix):
        return Split(t(a[f"{prefix}_x"]), t(a[f"{prefix}_y"]))
    return Dataset(name, list(meta["classes"]), split("train"), split("test"), meta["source"], meta["verified"],
                   list(tried), val=split("val") if "val_x" in a else None, layout=meta.get("layout", ""),
                   ignored=meta.get("ignored", 0), skipped=meta.get("skipped", []))


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
