"""A user's picture folders, on small files generated here: each layout (train/test, class folders alone, a labels
file; folders and archives), each odd picture (EXIF-rotated, CMYK, palette, 16-bit, transparent, truncated), the
size rules (image_size, crop_to_aspect_ratio, one shared size or a clear refusal) and the skip/strict rule."""

import io
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.core.errors import CnnlabError
from cnnlab.data import datasets, pictures
from cnnlab.data.folders import PictureOptions
from cnnlab.serving import predict
from conftest import cnnlab, folder_and_archives, picture_folder

RNG = np.random.default_rng(0)


def noise(w, h, mode="RGB"):
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    return Image.fromarray(RNG.integers(0, 256, shape, dtype=np.uint8), "RGB" if mode == "RGB" else "L")


def class_folders(root, per_class=10, size=(12, 10), **kw):
    return picture_folder(root, per_class=per_class, size=size, splits=(), **kw)


def load(path, **options):
    return datasets.load(data=str(path), pictures=PictureOptions(**options))


def test_class_folders_alone_hold_out_a_seeded_stratified_test_set(tmp_path):
    root = class_folders(tmp_path / "pets", per_class=10)
    ds = load(root, test_split=0.2, seed=1)
    assert ds.layout == "class folders" and ds.classes == ["cat", "dog"]
    assert ds.train.x.shape == (16, 3, 10, 12) and ds.test.x.shape == (4, 3, 10, 12)
    assert ds.test.y.tolist() == [0, 0, 1, 1] and ds.train.y.tolist() == [0] * 8 + [1] * 8
    again, other = load(root, test_split=0.2, seed=1), load(root, test_split=0.2, seed=2)
    assert torch.equal(again.test.x, ds.test.x) and not torch.equal(other.test.x, ds.test.x)
    everything = {bytes(x.numpy()) for x in ds.train.x} | {bytes(x.numpy()) for x in ds.test.x}
    assert len(everything) == 20  # each picture once, in one of the two


def test_one_top_folder_in_an_archive_is_not_a_class(tmp_path):
    root = class_folders(tmp_path / "pets")
    loaded = [load(p) for p in folder_and_archives(root, zip_prefix="export/pets/")]
    for ds in loaded:
        assert ds.classes == ["cat", "dog"] and len(ds.train) == 16
        assert torch.equal(ds.train.x, loaded[0].train.x) and torch.equal(ds.test.x, loaded[0].test.x)


def test_a_val_folder_is_the_validation_set(tmp_path):
    from cnnlab.data.splits import prepare_data
    from cnnlab.models import presets
    for split, n in (("train", 6), ("validation", 3), ("test", 2)):
        class_folders(tmp_path / "set" / split, per_class=n)
    cfg, _ = presets.resolve("small-cnn", {"data": str(tmp_path / "set")})
    ds, train, val = prepare_data(cfg)
    assert ds.layout == "train/test folders" and len(train) == 12 and len(val) == 6 and len(ds.test) == 4


@pytest.mark.parametrize("dialect", ["csv", "tsv"])
def test_a_labels_file_names_each_picture_and_its_class(tmp_path, dialect):
    root = tmp_path / "scans"
    (root / "images").mkdir(parents=True)
    sep = "," if dialect == "csv" else "\t"
    rows = [f"file{sep}label"]
    for i in range(12):
        noise(8, 8).save(root / "images" / f"{i}.png")
        rows.append(f"images/{i}.png{sep}{'benign' if i % 3 else 'malignant'}")
    (root / f"labels.{dialect}").write_text("\n".join(rows) + "\n")
    ds = load(root, test_split=0.25)
    assert ds.layout == "labels file" and ds.classes == ["benign", "malignant"]
    assert len(ds.train) + len(ds.test) == 12 and ds.test.y.tolist() == [0, 0, 1]
    (root / f"labels.{dialect}").write_text("\n".join(rows + [f"images/gone.png{sep}benign"]) + "\n")
    with pytest.raises(CnnlabError, match="1 of its 13 rows name files that are not there \\(first: images/gone.png\\)"):
        load(root)


def test_hidden_and_non_picture_files_are_ignored_and_counted(tmp_path):
    root = class_folders(tmp_path / "pets")
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "cat" / "._00.png").write_bytes(b"resource fork")
    (root / "cat" / "notes.txt").write_text("cats")
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "x.png").write_bytes(b"\0")
    ds = load(root)
    assert ds.ignored == 4 and len(ds.train) + len(ds.test) == 20 and not ds.skipped


def test_an_unreadable_picture_is_skipped_and_listed_unless_strict(tmp_path):
    root = class_folders(tmp_path / "pets")
    (root / "dog" / "junk.jpg").write_bytes(b"\xff\xd8\xff not really")
    blob = io.BytesIO()
    noise(200, 200).save(blob, "JPEG")
    (root / "cat" / "cut.jpg").write_bytes(blob.getvalue()[:len(blob.getvalue()) // 2])  # header fine, data cut
    ds = load(root, image_size=(10, 12))
    assert [name for name, _ in ds.skipped] == ["cat/cut.jpg", "dog/junk.jpg"]
    assert "truncated" in ds.skipped[0][1] and "cannot decode" in ds.skipped[1][1]
    assert len(ds.train) + len(ds.test) == 20
    with pytest.raises(CnnlabError, match="dog/junk.jpg: cannot decode .*strict"):  # refused before decoding
        load(root, image_size=(10, 12), strict=True)


def test_exif_orientation_stands_the_picture_up(tmp_path):
    root = class_folders(tmp_path / "pets", size=(10, 20))  # stored 10 wide, 20 tall
    upright = np.asarray(noise(10, 20))
    stored = Image.fromarray(np.rot90(upright, 1).copy())  # 20 wide, 10 tall: turned a quarter left
    exif = Image.Exif()
    exif[pictures.ORIENTATION] = 6  # "rotate 90 CW to view"
    stored.save(root / "cat" / "turned.png", exif=exif)
    upright_blob = io.BytesIO()
    Image.fromarray(upright).save(upright_blob, "PNG")
    ds = load(root, test_split=0.0)
    assert ds.train.x.shape[2:] == (20, 10)  # one shared size once upright: no --image-size needed
    turned = pictures.prepare((root / "cat" / "turned.png").read_bytes(), "turned.png", None, 3)
    assert np.array_equal(turned, upright.transpose(2, 0, 1))
    assert any(np.array_equal(x.numpy(), turned) for x in ds.train.x)


@pytest.mark.parametrize("make, expected", [
    (lambda: Image.new("CMYK", (8, 8), (0, 255, 255, 0)), (255, 0, 0)),  # cyan 0, magenta+yellow: red
    (lambda: Image.new("RGBA", (8, 8), (0, 0, 0, 0)), (255, 255, 255)),  # transparent: white paper
    (lambda: Image.new("LA", (8, 8), (0, 128)), (127, 127, 127)),  # half-transparent black on white
    (lambda: Image.fromarray(np.full((8, 8), 65535, np.uint16)), (255, 255, 255)),  # 16-bit white is white
    (lambda: Image.fromarray(np.full((8, 8), 32896, np.uint16)), (128, 128, 128)),  # not clipped to 255
    (lambda: Image.new("1", (8, 8), 1), (255, 255, 255)),
])
def test_odd_picture_modes_become_rgb(make, expected):
    blob = io.BytesIO()
    img = make()
    img.save(blob, "JPEG" if img.mode == "CMYK" else "PNG")
    x = pictures.prepare(blob.getvalue(), "odd", (8, 8), 3)
    assert x.shape == (3, 8, 8) and np.abs(x.astype(int) - np.array(expected)[:, None, None]).max() <= 2


def test_a_palette_with_a_transparent_entry_is_laid_on_white():
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 1)
    blob = io.BytesIO()
    img.save(blob, "PNG", transparency=0)
    x = pictures.prepare(blob.getvalue(), "palette", (8, 8), 3)
    assert x[:, 0, 0].tolist() == [255, 0, 0] and x[:, 7, 7].tolist() == [255, 255, 255]


def test_grayscale_only_when_every_picture_is(tmp_path):
    root = tmp_path / "digits"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            noise(8, 8, "L").save(root / c / f"{i}.png")
    assert load(root).train.x.shape[1] == 1
    assert load(root, color_mode="rgb").train.x.shape[1] == 3
    noise(8, 8).save(root / "a" / "colour.png")
    assert load(root).train.x.shape[1] == 3
    assert load(root, color_mode="grayscale").train.x.shape[1] == 1


def test_pictures_of_many_sizes_need_an_image_size(tmp_path):
    root = tmp_path / "photos"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i, size in enumerate([(40, 30), (64, 48), (80, 60)]):
            noise(*size).save(root / c / f"{i}.jpg")
    with pytest.raises(CnnlabError, match="3 sizes \\(median 64x48\\); .*--image-size 48"):
        load(root)
    assert load(root, image_size=(24, 32)).train.x.shape[1:] == (3, 24, 32)


def test_crop_to_aspect_ratio_keeps_the_centre(tmp_path):
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, :20], wide[:, 20:40], wide[:, 40:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    blob = io.BytesIO()
    Image.fromarray(wide).save(blob, "PNG")
    cropped = pictures.prepare(blob.getvalue(), "wide", (10, 10), 3, crop=True)
    stretched = pictures.prepare(blob.getvalue(), "wide", (10, 10), 3, crop=False)
    assert (cropped[1] > 200).all() and (cropped[0] < 50).all()  # all green: the middle third
    assert stretched[0, :, 0].min() > 200 and stretched[2, :, -1].min() > 200  # red left, blue right


def test_a_big_png_is_box_reduced_first_close_to_a_full_size_resize_and_laid_on_white():
    y, x = np.mgrid[0:900, 0:1200]
    rgba = np.stack([x * 255 // 1199, y * 255 // 899, (np.sin(x / 40.0) * 127 + 128).astype(int),
                     np.where(x < 300, 0, 200)], -1).astype(np.uint8)  # the left quarter fully transparent
    blob = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(blob, "PNG")
    fast = pictures.prepare(blob.getvalue(), "big.png", (64, 48), 3)
    full = pictures.to_mode(Image.open(blob), 3)
    slow = pictures.as_array(full.resize((64, 48), Image.LANCZOS), 3)
    assert fast.shape == (3, 48, 64) and np.abs(fast.astype(int) - slow).mean() < 2
    assert (fast[:, :, :14] >= 250).all()  # transparent reads as white paper


def test_a_big_jpeg_decodes_at_a_reduced_scale_close_to_a_full_decode():
    smooth = Image.fromarray(RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)).resize((4000, 3000), Image.BICUBIC)
    blob = io.BytesIO()
    smooth.save(blob, "JPEG", quality=90)
    fast = pictures.prepare(blob.getvalue(), "big", (64, 48), 3)
    slow = pictures.as_array(pictures.resize(Image.open(blob).convert("RGB"), (64, 48)), 3)
    assert fast.shape == (3, 48, 64) and np.abs(fast.astype(int) - slow).mean() < 3


def test_predict_prepares_a_file_exactly_as_training_did(tmp_path):
    root = tmp_path / "photos"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i, size in enumerate([(90, 50), (50, 90), (300, 200)]):
            noise(*size).save(root / c / f"{i}.jpg", quality=85)
    ds = load(root, image_size=(16, 24), crop_to_aspect_ratio=True, test_split=0.0)
    rows = {bytes(x.numpy()) for x in ds.train.x}
    for f in sorted(root.rglob("*.jpg")):
        x = predict.prepare(f.read_bytes(), (3, 16, 24), crop=True, name=str(f))
        assert bytes(x.numpy()) in rows, f


@pytest.mark.parametrize("build, message", [
    (lambda r: class_folders(r, classes=("only",)), "only one class \\(only\\)"),
    (lambda r: (r / "cat").mkdir(parents=True), "no pictures found"),
    (lambda r: [(r / c).mkdir(parents=True) or (r / c / "x.jpg").write_bytes(b"junk") for c in "ab"],
     "none of its 2 pictures could be decoded"),
    (lambda r: class_folders(r, per_class=1), "class 'cat' has 1 readable picture"),
    (lambda r: noise(8, 8).save(r / "flat.png") if r.mkdir(parents=True) is None else None, "no class folders"),
])
def test_bad_folders_are_refused_with_one_line(tmp_path, build, message):
    build(tmp_path / "bad")
    with pytest.raises(CnnlabError, match=message) as e:
        load(tmp_path / "bad")
    assert "\n" not in str(e.value)


def test_big_photos_decode_in_bounded_memory(tmp_path):
    """200 photos of 12 megapixels (7.2 GB were they all held decoded) at image_size 64: the process grows by
    less than 1 GiB over its size before loading, whatever the cores decode at once."""
    root = tmp_path / "photos"
    blobs = []
    for k in range(4):
        big = Image.fromarray(RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)).resize((4000, 3000), Image.BICUBIC)
        out = io.BytesIO()
        big.save(out, "JPEG", quality=85)
        blobs.append(out.getvalue())
    for i in range(200):
        (root / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        (root / "ab"[i % 2] / f"{i:03d}.jpg").write_bytes(blobs[i % 4])
    code = f"""
import resource
from cnnlab.data import datasets
from cnnlab.data.folders import PictureOptions
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ds = datasets.load(data={str(root)!r}, pictures=PictureOptions(image_size=(64, 64)))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(ds.train) + len(ds.test), (after - before) // 1024)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    images, grew_mib = map(int, r.stdout.split())
    assert images == 200 and grew_mib < 1024, grew_mib


def test_train_and_predict_on_a_photo_folder_from_the_cli(tmp_path):
    root = class_folders(tmp_path / "pets", per_class=12, size=(50, 40), ext="jpg")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff no")
    r = cnnlab("train", "small-cnn", "--data", root, "--image-size", 32, "--epochs", 1, "--runs", tmp_path / "runs")
    assert r.returncode == 0, r.stderr
    assert "pictures: 24 in 2 classes (cat 12, dog 12), class folders; 1 unreadable picture(s) skipped" in r.stdout
    run = tmp_path / "runs" / "small-cnn-pets"
    assert (run / "skipped.txt").read_text().startswith("dog/broken.jpg\tcannot decode image")
    r = cnnlab("predict", run, root / "cat" / "00.jpg", "--json")
    assert r.returncode == 0 and '"class": "' in r.stdout, r.stderr


@pytest.mark.parametrize("args, message", [
    (["small-cnn", "--image-size", 32], "only one class"),
    (["mnist-cnn", "--image-size", 12], "mnist-cnn was made for 28x28 pictures: use --image-size 28, or the small-cnn"),
    (["mlp", "--image-size", 256], "mlp at 256x256 would have .* parameters"),
])
def test_what_does_not_fit_is_one_line_and_exit_2(tmp_path, args, message):
    root = class_folders(tmp_path / "pics", classes=("a", "b") if "small-cnn" not in args else ("a",), size=(20, 20))
    r = cnnlab("train", *args, "--data", root, "--runs", tmp_path / "runs")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and re.search(message, r.stderr), r.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("last.pt"))
