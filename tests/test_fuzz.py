"""Fuzzing the parsers a user's files reach: IDX, CIFAR tarballs, image folders/archives, configs and model specs.

The contract: whatever the bytes, a parser either returns well-formed arrays or raises CnnlabError (one clear
line for the user) - never another exception type, never a hang. CI runs a short version; for the full one:
    CNNLAB_FUZZ_EXAMPLES=10000 python -m pytest tests/test_fuzz.py -q
"""

import gzip
import io
import os
import pickle
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from cnnlab.core import config, validation
from cnnlab.core.errors import CnnlabError
from cnnlab.data import folders, formats
from cnnlab.models import specs

pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name")
EXAMPLES = int(os.environ.get("CNNLAB_FUZZ_EXAMPLES", "150"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WORK = Path(tempfile.mkdtemp(prefix="cnnlab-fuzz-"))


@pytest.fixture(autouse=True, scope="module")
def ieee_floats():
    """Hypothesis draws subnormal floats and refuses to run where they flush to zero, as `import cnnlab` makes
    them for training's speed: the parsers are fuzzed with IEEE arithmetic, then the flush is restored."""
    import torch
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(True)


def clean_error_or_arrays(fn, *args):
    try:
        out = fn(*args)
    except CnnlabError as e:
        assert str(e) and "\n" not in str(e)
        return None
    return out


# ---- IDX ----
structured_idx = st.builds(
    lambda t, nd, dims, body: bytes([0, 0, t, nd]) + b"".join(d.to_bytes(4, "big") for d in dims) + body,
    st.sampled_from([0x08, 0x08, 0x09, 0x0D]), st.integers(0, 6),
    st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 8), max_size=6), st.binary(max_size=200))


@fuzz
@given(st.one_of(st.binary(max_size=300), structured_idx), st.booleans())
def test_idx(blob, gz):
    path = WORK / "fuzz-idx"
    path.write_bytes(gzip.compress(blob) if gz else blob)
    data = clean_error_or_arrays(formats.read_maybe_gzip, path)
    if data is not None:
        arr = clean_error_or_arrays(formats.parse_idx, data)
        if arr is not None:
            assert arr.dtype == np.uint8 and arr.size == len(data) - 4 - 4 * arr.ndim


# ---- CIFAR python tarballs ----
leaf = (st.none() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.binary(max_size=20) | st.text(max_size=10)
        | hnp.arrays(st.sampled_from([np.uint8, np.int64, np.float32]), hnp.array_shapes(max_dims=2, max_side=8)))
values = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=8), inner, max_size=4),
                      max_leaves=8)
good_batch = st.builds(lambda n, k: {b"data": np.zeros((n, 3072), np.uint8), b"labels": [i % k for i in range(n)]},
                       st.integers(0, 3), st.integers(1, 12))
member = st.one_of(st.none(), st.binary(max_size=64), values.map(lambda v: pickle.dumps(v, protocol=2)),
                   good_batch.map(lambda v: pickle.dumps(v, protocol=2)),
                   st.just(b"cos\nsystem\n(S'true'\ntR."))  # a pickle that would run a shell command


@fuzz
@given(st.lists(member, min_size=7, max_size=7), st.sampled_from(["w:gz", "w"]), st.booleans())
def test_cifar_tarball(members, mode, truncate):
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, blob in zip(names, members):
            if blob is not None:
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    data = buf.getvalue()
    path = WORK / "fuzz.tar.gz"
    path.write_bytes(data[: len(data) // 2] if truncate else data)
    out = clean_error_or_arrays(formats.read_cifar_tarball, path)
    if out is not None:
        (trx, try_), (tex, tey), classes = out
        assert trx.dtype == np.uint8 and trx.shape[1:] == (3, 32, 32) and len(trx) == len(try_)
        assert len(classes) and (len(try_) == 0 or 0 <= try_.min() <= try_.max() < len(classes))


# ---- image folders in zip archives ----
def image_bytes(mode, size, fmt):
    img = Image.new(mode, size)
    out = io.BytesIO()
    try:
        img.save(out, fmt)
    except (OSError, ValueError, KeyError):
        return b"unsavable"
    return out.getvalue()


images = st.builds(image_bytes, st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16", "CMYK", "LA", "F"]),
                   st.tuples(st.integers(1, 12), st.integers(1, 12)), st.sampled_from(["PNG", "JPEG", "BMP", "GIF"]))
member_name = st.lists(st.sampled_from(["train", "test", "cat", "dog", "..", "", "x", "a.png", "b.jpg", "c.bmp",
                                        "d.txt", "/"]), min_size=1, max_size=5).map("/".join)


@fuzz
@given(st.lists(st.tuples(member_name, images | st.binary(max_size=40)), max_size=8))
def test_image_zip(entries):
    path = WORK / "fuzz.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in entries:
            z.writestr(name or "empty", blob)
    out = clean_error_or_arrays(folders.read, path, folders.PictureOptions(image_size=(8, 8)))
    if out is not None:
        for x, y in out.arrays.values():
            assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[1:] in ((1, 8, 8), (3, 8, 8))
            assert len(x) == len(y) and (len(y) == 0 or y.max() < len(out.classes))


# ---- configs and model specs ----
keys = st.sampled_from(["epochs", "batch_size", "seed", "val_split", "optimizer", "optimizer.lr", "optimizer.name",
                        "early_stopping", "early_stopping.patience", "checkpoint.filepath", "layers", "init",
                        "threads", "nonsense", "reduce_lr.factor", "data"])
scalars = (st.none() | st.booleans() | st.integers(-10, 2**70) | st.floats() | st.text(max_size=12)
           | st.sampled_from(["sgd", "adam", "{epoch}.pt", "../x", "classes", "same", "relu"]))
layer = st.dictionaries(st.sampled_from(["type", "filters", "kernel", "padding", "stride", "activation", "units",
                                         "rate", "size", "name", "bogus"]),
                        scalars | st.sampled_from(["conv2d", "dense", "flatten", "maxpool", "batchnorm", "dropout",
                                                   "avgpool", "activation"]) | st.lists(scalars, max_size=2),
                        max_size=6)


@fuzz
@given(st.dictionaries(keys, scalars | st.lists(layer, max_size=5) | st.dictionaries(st.text(max_size=8), scalars,
                                                                                        max_size=3), max_size=6),
       st.lists(layer, max_size=6), st.text(max_size=30))
def test_config_and_model_spec(d, layers, set_item):
    def check():
        cfg = config.from_dict(d)
        validation.validate(cfg)
        config.set_value(cfg, *config.parse_set(set_item))
        return cfg
    clean_error_or_arrays(check)
    clean_error_or_arrays(specs.build, layers, (1, 8, 8), 10)


@fuzz
@given(st.text(max_size=200))
def test_toml_text(text):
    path = WORK / "fuzz.toml"
    path.write_text(text)
    d = clean_error_or_arrays(config.load_toml, str(path))
    if d is not None:
        clean_error_or_arrays(config.from_dict, d)
