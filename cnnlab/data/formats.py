"""Readers for the standard on-disk formats: IDX (MNIST family) and the CIFAR-10 python tarball (picture
folders: folders.py).

Every reader returns plain uint8 numpy arrays shaped N x C x H x W plus int64 labels, and raises CnnlabError
with one readable sentence on anything malformed: these files come from users and the internet.
"""

import gzip
import io
import lzma
import math
import pickle
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from cnnlab.core.errors import CnnlabError

MAX_FILE_BYTES = 1 << 30  # no IDX file or CIFAR batch is near 1 GiB uncompressed; a gzip bomb is
ARCHIVE_ERRORS = (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error, gzip.BadGzipFile,
                  lzma.LZMAError, NotImplementedError, RuntimeError)  # RuntimeError: zipfile's "encrypted, password required"


def read_limited(stream, limit: int, name) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise CnnlabError(f"{name}: larger than {limit >> 20} MiB once decompressed; refusing it")
    return data


def read_maybe_gzip(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            return read_limited(gzip.GzipFile(fileobj=f) if gz else f, MAX_FILE_BYTES, path)
    except ARCHIVE_ERRORS as e:
        raise CnnlabError(f"cannot read {path}: {e}") from None


def parse_idx(data: bytes, name: str = "IDX file") -> np.ndarray:
    """Decode an IDX file (http://yann.lecun.com/exdb/mnist/): magic 0,0,type,ndim then big-endian sizes."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise CnnlabError(f"{name}: not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise CnnlabError(f"{name}: IDX element type 0x{data[2]:02x} is not unsigned bytes (0x08)")
    ndim = data[3]
    if not 1 <= ndim <= 4 or len(data) < 4 + 4 * ndim:
        raise CnnlabError(f"{name}: IDX header is truncated or declares {ndim} dimensions")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if math.prod(max(d, 1) for d in dims) > MAX_FILE_BYTES:  # also for a zero dim: numpy refuses such shapes
        raise CnnlabError(f"{name}: IDX header declares absurd dimensions {dims}")
    expected = math.prod(dims)  # Python ints: four 32-bit sizes can overflow int64
    body = len(data) - 4 - 4 * ndim
    if body != expected:
        raise CnnlabError(f"{name}: IDX header says {dims} ({expected} bytes) but the file holds {body} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def idx_images_and_labels(images: np.ndarray, labels: np.ndarray, name: str):
    if images.ndim != 3 or labels.ndim != 1:
        raise CnnlabError(f"{name}: expected N x H x W images and N labels, got {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise CnnlabError(f"{name}: {len(images)} images but {len(labels)} labels")
    return images[:, None, :, :].copy(), labels.astype(np.int64)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; a pickle can run arbitrary code. Allow only what a numpy array needs."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise CnnlabError(f"refusing to unpickle {module}.{name}: a CIFAR batch holds only arrays and lists")
        return super().find_class(module, name)


def _unpickle_batch(blob: bytes, member: str) -> dict:
    try:
        d = _ArrayOnlyUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except CnnlabError:
        raise
    except Exception as e:  # a corrupt pickle can raise almost anything; report it as the file's fault
        raise CnnlabError(f"{member}: not a readable CIFAR batch ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise CnnlabError(f"{member}: a CIFAR batch must be a dict")
    return {k.decode("utf-8", "replace") if isinstance(k, bytes) else k: v for k, v in d.items()}


def read_cifar_tarball(path: Path):
    """The cifar-10-python.tar.gz layout: data_batch_1..5, test_batch and batches.meta, each a pickled dict."""
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {PurePosixPath(m.name).name: m for m in tar.getmembers() if m.isfile()}
            wanted = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
            missing = [w for w in wanted if w not in members]
            if missing:
                raise CnnlabError(f"{path}: not a CIFAR-10 python tarball, missing {', '.join(missing)}")
            blobs = {w: read_limited(tar.extractfile(members[w]), MAX_FILE_BYTES, w) for w in wanted}
    except ARCHIVE_ERRORS as e:
        raise CnnlabError(f"cannot read {path}: {e}") from None
    meta = _unpickle_batch(blobs["batches.meta"], "batches.meta")
    names = meta.get("label_names")
    if not isinstance(names, list) or not names or not all(isinstance(c, (bytes, str)) for c in names):
        raise CnnlabError(f"{path}: batches.meta has no list of label_names")
    classes = [c.decode("utf-8", "replace") if isinstance(c, bytes) else c for c in names]

    def batch(names):
        xs, ys = [], []
        for n in names:
            d = _unpickle_batch(blobs[n], n)
            x, y = d.get("data"), d.get("labels")
            if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
                raise CnnlabError(f"{n}: 'data' must be an N x 3072 uint8 array")
            if not isinstance(y, list) or not all(type(v) is int for v in y):
                raise CnnlabError(f"{n}: 'labels' must be a list of integers")
            y = np.array(y, dtype=np.int64) if all(-2**63 <= v < 2**63 for v in y) else np.array([-1])
            if y.shape != (len(x),):
                raise CnnlabError(f"{n}: {len(x)} images but labels do not match")
            if len(y) and (y.min() < 0 or y.max() >= len(classes)):
                raise CnnlabError(f"{n}: labels outside 0..{len(classes) - 1}")
            xs.append(x.reshape(-1, 3, 32, 32))  # row-major R, G, B planes of 32x32
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    return batch(wanted[:5]), batch(["test_batch"]), classes
