"""Readers for the standard on-disk formats: IDX (MNIST family), the CIFAR-10 python tarball, and image folders.

Every reader returns plain uint8 numpy arrays shaped N x C x H x W plus int64 labels, and raises CnnlabError
with one readable sentence on anything malformed: these files come from users and the internet.
"""

import gzip
import io
import lzma
import math
import pickle
import tarfile
import warnings
import zipfile
import zlib
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlab.core.errors import CnnlabError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
MAX_IMAGE_PIXELS = 4096 * 4096  # a training image larger than this is a decompression bomb, not a photo
MAX_FILE_BYTES = 1 << 30  # no IDX file or CIFAR batch is near 1 GiB uncompressed; a gzip bomb is
MAX_IMAGE_FILE_BYTES = 64 << 20
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


# ---- image folders: train/<class>/*.png and test/<class>/*, as a folder, .tar(.gz) or .zip ----

def _list_archive(path: Path):
    """Yield (posix relative name, size, reader) for every regular file in a folder or archive."""
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                yield p.relative_to(path).as_posix(), p.stat().st_size, (lambda p=p: p.open("rb"))
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, info.file_size, (lambda info=info: zf.open(info))
    elif tarfile.is_tarfile(path):
        # Stream once: reading members in archive order avoids re-decompressing a .tar.gz per image.
        with tarfile.open(path, "r|*") as tar:
            for m in tar:
                if m.isfile():
                    yield m.name, m.size, (lambda m=m: tar.extractfile(m))
    else:
        raise CnnlabError(f"{path}: not a folder, .zip or .tar(.gz) archive")


def _split_class(name: str):
    """'x/cifar10-jpeg/train/cat/1.jpg' -> ('train', 'cat'); None for files outside train/ or test/."""
    parts = PurePosixPath(name).parts
    if ".." in parts or PurePosixPath(name).is_absolute():
        raise CnnlabError(f"archive member {name!r} points outside the archive")
    if PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES or len(parts) < 3:
        return None
    split, cls = parts[-3], parts[-2]
    return (split, cls) if split in ("train", "test") else None


def decode_image(blob: bytes, name: str) -> Image.Image:
    """One picture (the first frame of an animation), refusing decompression bombs; errors name the file."""
    try:
        with warnings.catch_warnings():  # PIL warns, then raises, on huge images: make both one clean error
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(blob))
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise CnnlabError(f"{name}: {img.width}x{img.height} pixels is too large")
        img.load()
        return img
    except CnnlabError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CnnlabError(f"{name}: too many pixels (a decompression bomb?)") from None
    except Image.UnidentifiedImageError:
        raise CnnlabError(f"{name}: cannot decode image (not a readable PNG, JPEG, BMP, GIF, WebP or TIFF)") from None
    except Exception as e:  # PIL raises many types for broken files
        raise CnnlabError(f"{name}: cannot decode image ({type(e).__name__}: {e})") from None


def read_image_folder(path: Path):
    """Decode every image; size = the most common one (others resized), grayscale only if every image is."""
    found = {"train": [], "test": []}
    try:
        for name, size, open_member in _list_archive(path):
            where = _split_class(name)
            if where:
                if size > MAX_IMAGE_FILE_BYTES:
                    raise CnnlabError(f"{name}: {size >> 20} MiB is too large for a training image")
                with open_member() as f:
                    blob = read_limited(f, MAX_IMAGE_FILE_BYTES, name)
                found[where[0]].append((where[1], name, decode_image(blob, name)))
    except ARCHIVE_ERRORS as e:
        raise CnnlabError(f"{path}: damaged or unreadable ({type(e).__name__}: {e})") from None
    if not found["train"] or not found["test"]:
        raise CnnlabError(f"{path}: expected images under train/<class>/ and test/<class>/")
    classes = sorted({c for c, _, _ in found["train"]})
    extra = sorted({c for c, _, _ in found["test"]} - set(classes))
    if extra:
        raise CnnlabError(f"{path}: test classes {extra} do not appear in train/")
    index = {c: i for i, c in enumerate(classes)}
    images = [img for split in found.values() for _, _, img in split]
    size = Counter(img.size for img in images).most_common(1)[0][0]
    mode = "L" if all(img.mode in ("L", "1", "I;16", "I") for img in images) else "RGB"

    def arrays(items):
        items.sort(key=lambda t: (t[0], t[1]))  # deterministic order: class, then file name
        x = np.stack([_to_array(img, mode, size, name) for _, name, img in items])
        y = np.array([index[c] for c, _, _ in items], dtype=np.int64)
        return (x[:, None] if mode == "L" else x.transpose(0, 3, 1, 2)).copy(), y

    return arrays(found["train"]), arrays(found["test"]), classes


def resize(img: Image.Image, size: tuple) -> Image.Image:
    """The one resize of training folders and of predict. Enlarging uses bilinear. Shrinking an enlargement
    (re-enlarging its values at the small grid's pixel centres, nearest, bilinear, bicubic or Lanczos, lands
    within ENLARGED_RMS of it) takes those centre values: such a picture has no detail to alias, and an
    antialiasing filter would only blur it. Any other picture is shrunk with Lanczos, the antialiasing filter.
    On 1,000 CIFAR-10 test images enlarged to 256x256 (bicubic, JPEG q90), the centres land 0.73 grey levels
    from the originals and Lanczos 2.74, and cifar-fast kept its answer on 997 against 970."""
    size = tuple(size)
    if img.size == size:
        return img
    if img.size[0] <= size[0] and img.size[1] <= size[1]:
        return img.resize(size, Image.BILINEAR)
    if img.mode in ("L", "RGB") and img.size[0] * img.size[1] <= ENLARGEMENT_CHECK_PIXELS:
        centres = _centre_samples(img, size)
        if _is_enlargement_of(img, centres):
            return centres
    return img.resize(size, Image.LANCZOS)


# Re-enlarged centres of 200 CIFAR-10 test images enlarged to 256x256 (nearest, bilinear, bicubic or Lanczos) and
# saved as JPEG q90 land at most 2.6 grey levels RMS from them; a photograph shrunk to 40-1024 pixels, 14-36.
ENLARGED_RMS = 6.0
# The check re-enlarges at full size, up to four ways (it stops at the first that fits, bicubic at 256x256 in
# 0.8 ms): a photo takes all four, 46 ms at 1024x1024 (Lanczos alone, 5 ms), and seconds at many megapixels,
# where it is no enlargement of a thumbnail.
ENLARGEMENT_CHECK_PIXELS = 1024 * 1024


def _centre_samples(img: Image.Image, size: tuple) -> Image.Image:
    """The picture's values at the small grid's pixel centres (bilinear between its own pixels, no filter)."""
    x = torch.from_numpy(np.asarray(img, dtype=np.float32))
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    y = F.interpolate(x, size=(size[1], size[0]), mode="bilinear", align_corners=False, antialias=False)
    y = y[0, 0] if img.mode == "L" else y[0].permute(1, 2, 0)
    return Image.fromarray(y.round().clamp(0, 255).to(torch.uint8).numpy())


def _is_enlargement_of(img: Image.Image, small: Image.Image) -> bool:
    """Whether one of small's common enlargements lands within ENLARGED_RMS grey levels RMS of the picture."""
    big = np.asarray(img, dtype=np.float32)
    def rms(how):
        return np.sqrt(np.mean((np.asarray(small.resize(img.size, how), dtype=np.float32) - big) ** 2))
    return any(rms(how) <= ENLARGED_RMS for how in (Image.BICUBIC, Image.LANCZOS, Image.BILINEAR, Image.NEAREST))


def _to_array(img: Image.Image, mode: str, size, name: str) -> np.ndarray:
    try:
        img = resize(img.convert(mode), size)
        return np.asarray(img, dtype=np.uint8)
    except Exception as e:
        raise CnnlabError(f"{name}: cannot convert image to {mode} ({type(e).__name__}: {e})") from None
