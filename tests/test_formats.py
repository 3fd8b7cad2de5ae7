"""Loaders on small files generated here in each exact format, and on broken or hostile versions of them."""

import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from cnnlab.core.errors import CnnlabError
from cnnlab.data import datasets, formats, pictures
from cnnlab.data.folders import PictureOptions
from conftest import folder_and_archives, idx_bytes, picture_folder, write_idx_set


def test_idx_roundtrip_raw_and_gz(tmp_path):
    for gz in (True, False):
        folder = tmp_path / f"set{gz}"
        arrays = write_idx_set(folder, gz=gz)
        ds = datasets.load(data=str(folder))
        assert ds.train.x.shape == (60, 1, 28, 28) and ds.test.x.shape == (20, 1, 28, 28)
        assert np.array_equal(ds.train.x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
        assert ds.train.y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
        assert not ds.verified  # a user's own IDX files have no published digest


@pytest.mark.parametrize("blob, message", [
    (b"\x08\x03\x00\x00", "bad magic"),
    (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"xxxx", "not unsigned bytes"),
    (bytes([0, 0, 8, 3, 0, 0]), "truncated"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 5]) + b"abc", "holds 3 bytes"),
    (bytes([0, 0, 8, 1, 255, 255, 255, 255]), "absurd dimensions"),
    (bytes([0, 0, 8, 2, 0, 0, 1, 0, 0, 0, 1, 0]), "holds 0 bytes"),
])
def test_idx_malformed_headers_are_refused(blob, message):
    with pytest.raises(CnnlabError, match=message):
        formats.parse_idx(blob)


def test_idx_label_count_mismatch(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(59)))
    with pytest.raises(CnnlabError, match="60 images but 59 labels"):
        datasets.load(data=str(tmp_path))


def cifar_tarball(path, n=20, classes=("plane", "car", "bird"), drop=None, payload=None):
    rng = np.random.default_rng(1)
    with tarfile.open(path, "w:gz") as tar:
        def add(name, obj):
            if name == drop:
                return
            blob = payload if (payload is not None and name == "data_batch_1") else pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        batches = {}
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batches[name] = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                             b"labels": [i % len(classes) for i in range(n)]}
            add(name, batches[name])
        add("batches.meta", {b"label_names": [c.encode() for c in classes]})
    return batches


def test_cifar_tarball_layout(tmp_path):
    batches = cifar_tarball(tmp_path / "cifar-10-python.tar.gz")
    ds = datasets.load(data=str(tmp_path / "cifar-10-python.tar.gz"))
    assert ds.classes == ["plane", "car", "bird"]
    assert ds.train.x.shape == (100, 3, 32, 32) and ds.test.x.shape == (20, 3, 32, 32)
    row = batches["data_batch_1"][b"data"][0]
    # Row-major planes: the first 1024 bytes are the red channel of the first image, then green, then blue.
    assert np.array_equal(ds.train.x[0, 0].numpy().ravel(), row[:1024])
    assert np.array_equal(ds.train.x[0, 2].numpy().ravel(), row[2048:])


def test_cifar_missing_member(tmp_path):
    cifar_tarball(tmp_path / "c.tar.gz", drop="test_batch")
    with pytest.raises(CnnlabError, match="missing test_batch"):
        formats.read_cifar_tarball(tmp_path / "c.tar.gz")


class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/cnnlab-pwned",))


def test_cifar_pickle_that_runs_code_is_refused(tmp_path):
    cifar_tarball(tmp_path / "c.tar.gz", payload=pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(CnnlabError, match="refusing to unpickle"):
        formats.read_cifar_tarball(tmp_path / "c.tar.gz")


def test_image_folder_dir_tar_and_zip_agree(tmp_path):
    root = picture_folder(tmp_path / "inner")
    loaded = [datasets.load(data=str(p)) for p in folder_and_archives(root)]
    for ds in loaded:
        assert ds.classes == ["cat", "dog"]
        assert ds.train.x.shape == (8, 3, 8, 8) and ds.train.y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
        assert np.array_equal(ds.train.x.numpy(), loaded[0].train.x.numpy())


def test_image_folder_grayscale_bmp_and_mixed_sizes(tmp_path):
    root = picture_folder(tmp_path / "digits", mode="L", ext="bmp")
    Image.new("L", (16, 16), 255).save(root / "train" / "cat" / "big.bmp")  # resized to image_size
    ds = datasets.load(data=str(root), pictures=PictureOptions(image_size=(8, 8)))
    assert ds.train.x.shape == (9, 1, 8, 8)
    assert int(ds.train.x[list(ds.train.y).index(0) + 0].max()) <= 255


def test_image_folder_broken_image_named_in_error(tmp_path):
    root = picture_folder(tmp_path / "f")
    (root / "train" / "dog" / "bad.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(CnnlabError, match="bad.jpg: cannot decode"):
        datasets.load(data=str(root), pictures=PictureOptions(strict=True))


def test_archive_path_traversal_refused(tmp_path):
    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        info = tarfile.TarInfo("../../train/cat/x.png")
        blob = io.BytesIO()
        Image.new("RGB", (4, 4)).save(blob, "PNG")
        info.size = len(blob.getvalue())
        tar.addfile(info, io.BytesIO(blob.getvalue()))
    with pytest.raises(CnnlabError, match="outside the archive"):
        datasets.load(data=str(tmp_path / "evil.tar"))


def test_folder_without_train_test_layout(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(CnnlabError, match="no pictures found"):
        datasets.load(data=str(tmp_path / "x"))


def png_claiming(width, height) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb's calling card."""
    import struct
    import zlib
    blob = io.BytesIO()
    Image.new("L", (1, 1)).save(blob, "PNG")
    data = bytearray(blob.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_decompression_bomb_image_is_refused(tmp_path):
    root = picture_folder(tmp_path / "f")
    (root / "train" / "cat" / "bomb.png").write_bytes(png_claiming(20000, 20000))
    with pytest.raises(CnnlabError, match="bomb.png: too many pixels"):
        datasets.load(data=str(root), pictures=PictureOptions(strict=True))
    (root / "train" / "cat" / "bomb.png").write_bytes(png_claiming(9000, 9000))  # under PIL's limit, over ours
    ds = datasets.load(data=str(root))  # skipped, not decoded
    assert ds.skipped == [["train/cat/bomb.png", "9000x9000 pixels is too large"]] and len(ds.train) == 8


def test_gzip_bomb_is_refused(tmp_path, monkeypatch):
    import gzip
    monkeypatch.setattr(formats, "MAX_FILE_BYTES", 10_000)  # the real limit is 1 GiB; same code path
    (tmp_path / "x.gz").write_bytes(gzip.compress(bytes(20_000)))
    with pytest.raises(CnnlabError, match="larger than .* once decompressed"):
        formats.read_maybe_gzip(tmp_path / "x.gz")


def test_cifar_label_count_mismatch(tmp_path):
    rng = np.random.default_rng(0)
    with tarfile.open(tmp_path / "c.tar.gz", "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
            obj = ({b"label_names": [b"a", b"b"]} if name == "batches.meta" else
                   {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 0]})
            blob = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(CnnlabError, match="4 images but labels do not match"):
        formats.read_cifar_tarball(tmp_path / "c.tar.gz")


def test_idx_zero_dimension_beside_huge_ones():
    """Found by the fuzzer: a zero-size body with a header whose other sizes are enormous."""
    blob = bytes([0, 0, 8, 4]) + b"".join(d.to_bytes(4, "big") for d in (0, 2, 0x4D000000, 0xD4C77B04))
    with pytest.raises(CnnlabError, match="absurd dimensions"):
        formats.parse_idx(blob)


@pytest.mark.parametrize("how", [Image.BICUBIC, Image.BILINEAR, Image.NEAREST, Image.LANCZOS])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_an_enlargement_shrinks_back_to_its_own_pixels(how, mode):
    """A 32x32 picture enlarged 8x comes back to its own pixels, where an antialiasing shrink would blur it. Noise is
    the hardest case; PIL's bilinear enlargement is itself a blur, so only the interpolating ones come back whole."""
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (32, 32, 3) if mode == "RGB" else (32, 32), dtype=np.uint8), mode)
    big = small.resize((256, 256), how)
    back = pictures.resize(big, (32, 32))
    assert back.size == (32, 32) and back.mode == mode
    err = np.abs(np.asarray(back, dtype=np.float32) - np.asarray(small, dtype=np.float32)).mean()
    lanczos = np.abs(np.asarray(big.resize((32, 32), Image.LANCZOS), dtype=np.float32)
                     - np.asarray(small, dtype=np.float32)).mean()
    assert err < lanczos / 2 and (err < 1.5 or how == Image.BILINEAR), (err, lanczos)


def test_a_picture_with_finer_detail_than_the_grid_is_filtered_not_sampled():
    """Noise, and a thick stroke drawn on white paper as on serve's canvas, are not enlargements: Lanczos."""
    from PIL import ImageDraw
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    paper = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(paper).line([(80, 60), (200, 60), (120, 230)], fill=0, width=18)
    for picture, size in [(noise, (32, 32)), (paper, (28, 28))]:
        assert np.array_equal(np.asarray(pictures.resize(picture, size)),
                              np.asarray(picture.resize(size, Image.LANCZOS)))
