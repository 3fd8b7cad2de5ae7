"""A user's pictures as arrays: a folder, .zip or .tar(.gz/.xz) archive laid out as

    train/<class>/… + test/<class>/… (val/ or validation/ too)
    <class>/…                   class folders alone: a seeded, stratified test split is held out
    labels.csv (or .tsv)        rows of path,label (paths relative to the file)

Two passes. The first lists the pictures and reads only their headers (size, orientation, colour), so the size
and the number of images are known before any pixel is decoded. The second decodes every picture straight to
the size the model sees (pictures.prepare) on all cores, into one preallocated uint8 array: memory holds that
array and a few pictures per core, never the folder at full size. Hidden and non-image files are ignored and
counted; a picture that cannot be decoded is skipped and listed (or refused, with strict).
"""

import csv
import io
import os
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from tqdm import tqdm

from cnnlab.core.errors import CnnlabError
from cnnlab.data import archives, pictures
from cnnlab.data.stratify import stratified_split

SPLITS = {"train": "train", "test": "test", "val": "val", "validation": "val"}
NAME_COLUMNS = ("path", "file", "filename", "fname", "image", "name")
LABEL_COLUMNS = ("label", "class", "category", "target")
HEADER_BYTES = 64 << 10  # a JPEG's EXIF block and frame header fit in its first 64 KiB


@dataclass
class PictureOptions:
    image_size: tuple = ()  # (height, width), Keras' order; () keeps the one size every picture shares
    crop_to_aspect_ratio: bool = False
    color_mode: str = "auto"  # auto (grayscale only if every picture is) | grayscale | rgb
    test_split: float = 0.2  # class folders or a CSV: the share of each class held out as the test set
    seed: int = 0
    strict: bool = False  # refuse a folder with an unreadable picture instead of skipping it


@dataclass
class Picture:
    name: str  # the path inside the folder or archive
    label: int
    split: str  # train | val | test
    slot: int = 0  # its row in its split's array


@dataclass
class Found:
    """What the folder held: arrays per split (x uint8 N x C x H x W, y int64) and what was left out."""
    layout: str
    classes: list
    arrays: dict  # split -> (x, y)
    ignored: int = 0  # hidden, non-picture or unlabelled files
    skipped: list = field(default_factory=list)  # (name, reason) of pictures that could not be decoded


def read(path: Path, opts: PictureOptions, threads: int = 0) -> Found:
    source = archives.Source(path)
    # 1. list the files and label the pictures (folder names or a labels file)
    names, ignored, texts = _list(source)
    layout, listed, classes, unlabelled = _label(path, names, texts, opts)
    # 2. read the headers: the pictures that open, their sizes and colours
    heads, skipped = _headers(source, listed, threads)
    listed = _readable(path, [p for p in listed if p.name in heads], classes, skipped, opts)
    if not any(p.split == "test" for p in listed):
        _hold_out(listed, opts)
    size, channels = _shape(path, [heads[p.name] for p in listed], opts)
    # 3. decode into one array per split, rows sorted by class then file name
    counts = Counter(p.split for p in listed)
    for split in counts:
        for slot, p in enumerate(sorted((p for p in listed if p.split == split), key=lambda p: (p.label, p.name))):
            p.slot = slot
    arrays = {s: (np.empty((n, channels, size[1], size[0]), np.uint8), np.empty(n, np.int64)) for s, n in counts.items()}
    failed = _decode(source, listed, arrays, size, channels, opts, threads)
    arrays = _without(arrays, listed, {n for n, _ in failed})
    _readable(path, [p for p in listed if p.name not in {n for n, _ in failed}], classes, skipped + failed, opts)
    return Found(layout, classes, arrays, ignored + unlabelled, sorted(skipped + failed))


def _readable(path, listed, classes, skipped, opts) -> list:
    """The pictures that could be read, once checked: some at all, two classes, two pictures a class."""
    if opts.strict and skipped:
        name, why = skipped[0]
        raise CnnlabError(f"{name}: {why} (strict: fix or remove it, or set strict = false to skip such pictures)")
    if not listed:
        if not skipped:
            raise CnnlabError(f"{path}: no pictures found ({', '.join(sorted(pictures.SUFFIXES))})")
        name, why = skipped[0]
        raise CnnlabError(f"{path}: none of its {len(skipped)} pictures could be decoded (first: {name}: {why})")
    counts = Counter(p.label for p in listed)
    if len(classes) < 2:
        raise CnnlabError(f"{path}: only one class ({classes[0]}): a classifier needs pictures of at least two")
    few = [c for i, c in enumerate(classes) if counts[i] < 2]
    if few:
        raise CnnlabError(f"{path}: class {few[0]!r} has {counts[classes.index(few[0])]} readable picture(s); "
                          f"each class needs at least 2")
    return listed


def in_split_folders(path: Path, files: list) -> bool:
    """Whether the first pictures of a folder (its `files`) or archive sit in train/, test/ or val/ folders: then
    the test set is the folder's own and no hold-out is seeded."""
    names = [f.relative_to(path).as_posix() for f in files[:1000]] if path.is_dir() else []
    if not path.is_dir():
        try:
            names = archives.Source(path).first_names(1000)
        except CnnlabError:
            return False
    return any(_split_of(n) for n in names if PurePosixPath(n).suffix.lower() in pictures.SUFFIXES)


def _split_of(name: str) -> str | None:
    """"train", "test" or "val" for a picture at <split>/<class>/<file>, None for any other place."""
    parts = PurePosixPath(name).parts
    return SPLITS.get(parts[-3]) if len(parts) >= 3 else None


def _list(source) -> tuple:
    """(picture names, ignored file count, {name: text} of label files)."""
    names, ignored, texts = [], 0, {}
    for name in source.names():
        parts = PurePosixPath(name).parts
        if ".." in parts or PurePosixPath(name).is_absolute():
            raise CnnlabError(f"archive member {name!r} points outside the archive")
        suffix = PurePosixPath(name).suffix.lower()
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            ignored += 1
        elif suffix in pictures.SUFFIXES:
            names.append(name)
        elif suffix in (".csv", ".tsv"):
            texts[name] = None  # read below, if the layout needs it
        else:
            ignored += 1
    for name in texts:
        texts[name] = source.read(name, 16 << 20).decode("utf-8-sig", "replace")
    return names, ignored, texts


def _label(path, names, texts, opts) -> tuple:
    """(layout, [Picture], classes, unlabelled count) from the folder names or a labels file."""
    if not names:
        raise CnnlabError(f"{path}: no pictures found ({', '.join(sorted(pictures.SUFFIXES))})")
    split_named = [n for n in names if _split_of(n)]
    if split_named:
        classes = sorted({PurePosixPath(n).parts[-2] for n in split_named if _split_of(n) == "train"})
        index = {c: i for i, c in enumerate(classes)}
        listed = [Picture(n, index.get(PurePosixPath(n).parts[-2], -1), _split_of(n)) for n in split_named]
        extra = sorted({PurePosixPath(p.name).parts[-2] for p in listed if p.label < 0})
        if extra:
            raise CnnlabError(f"{path}: classes {extra} appear in test/ or val/ but not in train/")
        return "train/test folders", listed, classes, len(names) - len(split_named)
    if texts:
        return ("labels file", *_from_labels_file(path, names, texts, opts))
    deep = [n for n in names if len(PurePosixPath(n).parts) >= 2]
    if not deep:
        raise CnnlabError(f"{path}: no class folders; put each class's pictures in a folder named after it "
                          f"(<class>/…, or train/<class>/ and test/<class>/), or give a labels.csv of path,label")
    dirs = [PurePosixPath(n).parts[:-1] for n in deep]
    top = os.path.commonprefix(dirs)[:min(map(len, dirs)) - 1]  # an archive's one top folder is not a class
    classes = sorted({d[len(top)] for d in dirs})
    index = {c: i for i, c in enumerate(classes)}
    listed = [Picture(n, index[d[len(top)]], "train") for n, d in zip(deep, dirs)]
    return "class folders", listed, classes, len(names) - len(deep)


def _hold_out(listed: list, opts: PictureOptions):
    """Keras' validation_split, for the test set: the same share of every class, chosen by the seed."""
    train = sorted((p for p in listed if p.split == "train"), key=lambda p: (p.label, p.name))
    _, test = stratified_split(torch.tensor([p.label for p in train]), opts.test_split, opts.seed)
    for i in test.tolist():
        train[i].split = "test"


def _from_labels_file(path, names, texts, opts) -> tuple:
    (where, text), *others = sorted(texts.items(), key=lambda t: (len(PurePosixPath(t[0]).parts), t[0]))
    dialect = "excel-tab" if where.lower().endswith(".tsv") else "excel"
    rows = [r for r in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in r)]
    if not rows or len(rows[0]) < 2:
        raise CnnlabError(f"{path}/{where}: expected rows of path,label")
    head = [c.strip().lower() for c in rows[0]]
    name_col = next((head.index(c) for c in NAME_COLUMNS if c in head), None)
    label_col = next((head.index(c) for c in LABEL_COLUMNS if c in head), None)
    if name_col is None or label_col is None:
        name_col, label_col = 0, 1
        base = str(PurePosixPath(where).parent)
        first = rows[0][0].strip()
        if str(PurePosixPath(base) / first) not in names and first not in names:
            rows = rows[1:]  # an unrecognised header
    else:
        rows = rows[1:]
    base = PurePosixPath(where).parent
    known = set(names)
    pairs, missing = [], []
    for r in rows:
        if len(r) <= max(name_col, label_col):
            raise CnnlabError(f"{path}/{where}: row {r!r} has no label")
        name = (base / r[name_col].strip()).as_posix() if str(base) != "." else r[name_col].strip()
        (pairs if name in known else missing).append((name, r[label_col].strip()))
    if missing:
        raise CnnlabError(f"{path}/{where}: {len(missing)} of its {len(rows)} rows name files that are not there "
                          f"(first: {missing[0][0]})")
    classes = sorted({label for _, label in pairs})
    index = {c: i for i, c in enumerate(classes)}
    listed = [Picture(n, index[c], "train") for n, c in pairs]
    return listed, classes, len(names) - len({n for n, _ in pairs})


def _headers(source, listed, threads) -> tuple:
    """{name: (width, height, grayscale)} of the readable pictures, and (name, reason) for the rest."""
    def one(name, read):
        try:
            blob = read()
            try:
                return name, pictures.header(blob, name), None
            except CnnlabError:
                if len(blob) < HEADER_BYTES or source.kind == "tar":
                    raise
                # a header beyond the first 64 KiB (a JPEG with a large embedded preview): the whole file, once
                return name, pictures.header(source.read(name, archives.MAX_PICTURE_BYTES), name), None
        except CnnlabError as e:
            return name, None, str(e).removeprefix(f"{name}: ")

    heads, skipped = {}, []
    for name, head, why in source.map_blobs({p.name for p in listed}, HEADER_BYTES, one, threads):
        if head is None:
            skipped.append((name, why))
        else:
            heads[name] = head
    return heads, sorted(skipped)


def _shape(path, heads, opts) -> tuple:
    """((width, height), channels) of the arrays."""
    if opts.color_mode == "auto":
        channels = 1 if all(g for _, _, g in heads) else 3
    else:
        channels = 1 if opts.color_mode == "grayscale" else 3
    if opts.image_size:
        height, width = opts.image_size
        return (width, height), channels
    sizes = Counter((w, h) for w, h, _ in heads)
    if len(sizes) == 1:
        return next(iter(sizes)), channels
    mw, mh = statistics.median_low(w for w, _, _ in heads), statistics.median_low(h for _, h, _ in heads)
    side = min(mw, mh, 224)
    raise CnnlabError(f"{path}: its pictures come in {len(sizes)} sizes (median {mw}x{mh}); say what size the "
                      f"model sees: --image-size {side} (or image_size = [height, width])")


def _decode(source, listed, arrays, size, channels, opts, threads) -> list:
    """Fill the arrays on all cores; (name, reason) of the pictures that failed."""
    by_name = {p.name: p for p in listed}
    failed = []

    def one(name, read):
        p = by_name[name]
        try:
            arrays[p.split][0][p.slot] = pictures.prepare(read(), name, size, channels, opts.crop_to_aspect_ratio)
            arrays[p.split][1][p.slot] = p.label
            return None
        except CnnlabError as e:
            return name, str(e).removeprefix(f"{name}: ")

    bar = tqdm(total=len(listed), unit="img", desc="decoding", leave=False, file=sys.stderr,
               disable=len(listed) < 2000 or not sys.stderr.isatty())
    for result in source.map_blobs(set(by_name), archives.MAX_PICTURE_BYTES, one, threads):
        bar.update()
        if result:
            failed.append(result)
    bar.close()
    return sorted(failed)


def _without(arrays, listed, failed: set) -> dict:
    """Each split's arrays with the failed pictures' rows removed in place (no second copy of the array)."""
    if not failed:
        return arrays
    out = {}
    for split, (x, y) in arrays.items():
        bad = {p.slot for p in listed if p.split == split and p.name in failed}
        keep = [i for i in range(len(y)) if i not in bad]
        for j, i in enumerate(keep):
            if i != j:
                x[j], y[j] = x[i], y[i]
        out[split] = (x[:len(keep)], y[:len(keep)])
    return out

