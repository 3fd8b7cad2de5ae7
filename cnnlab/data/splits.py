"""The splits a run trains, validates and tests on: a seeded, stratified validation hold-out of the training set
(or the test set, as the lab did), and seeded random subsets for quick runs."""

import os
from pathlib import Path

import torch

from cnnlab.core import config
from cnnlab.core.errors import CnnlabError
from cnnlab.data import datasets
from cnnlab.data.datasets import Split
from cnnlab.data.folders import PictureOptions
from cnnlab.data.stratify import stratified_split


def prepare_data(cfg: config.Config, data_dir: str | None = None, digest: str = ""):
    """Load the data set and hold out a stratified validation split (or use the test set if asked). A `--data`
    path that is gone is looked for, by the run's recorded `digest`, in the data folder and the working folder."""
    data = cfg.data
    if data and digest and not Path(data).exists():
        search = [d for d in (data_dir, os.environ.get("CNNLAB_DATA"), ".") if d]
        data = str(datasets.find_moved(Path(data), digest, search) or data)
    ds = datasets.load(cfg.dataset, data or None, data_dir, picture_options(cfg))
    if cfg.image_size and not ds.layout:
        raise CnnlabError(f"image_size resizes a picture folder's pictures (--data FOLDER); {ds.name}'s images are "
                          f"{'x'.join(map(str, ds.input_shape[1:]))} arrays: drop image_size")
    if data != cfg.data:
        ds.source += f" (moved from {cfg.data}: found by its digest)"
    if cfg.test_subset:
        ds.test = _sample(ds.test, torch.arange(len(ds.test)), cfg.test_subset, cfg.seed)
    everything = torch.arange(len(ds.train))
    if cfg.validate_on == "test":
        return ds, _sample(ds.train, everything, cfg.train_subset, cfg.seed), ds.test
    if ds.val is not None:  # the folder's own val/ or validation/ pictures
        return ds, _sample(ds.train, everything, cfg.train_subset, cfg.seed), ds.val
    if cfg.val_split == 0:
        return ds, _sample(ds.train, everything, cfg.train_subset, cfg.seed), None
    train_idx, val_idx = stratified_split(ds.train.y, cfg.val_split, cfg.seed)
    if len(train_idx) == 0:
        raise CnnlabError(f"val_split {cfg.val_split} leaves no training images")
    # train_subset shrinks the hold-out with it, keeping val_split's proportion: 3,000 training images are
    # validated on 333, not on the 6,000 the whole set would hold out (a quick run stays quick).
    val_n = round(cfg.train_subset * cfg.val_split / (1 - cfg.val_split)) if cfg.train_subset else 0
    return ds, _sample(ds.train, train_idx, cfg.train_subset, cfg.seed), _sample(ds.train, val_idx, val_n, cfg.seed)


def picture_options(cfg: config.Config) -> PictureOptions:
    """How a picture folder is read: sizes, colour, the test hold-out and the skip rule, from the run's config."""
    return PictureOptions(tuple(cfg.image_size), cfg.crop_to_aspect_ratio, cfg.color_mode, cfg.test_split, cfg.seed,
                          cfg.strict)


def _sample(split: Split, idx: torch.Tensor, n: int, seed: int) -> Split:
    """The images at `idx`, or a seeded random `n` of them (folders are sorted by class: never take the first n)."""
    if 0 < n < len(idx):
        idx = torch.sort(idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))[:n]]).values
    elif torch.equal(idx, torch.arange(len(split.y))):  # all, in order: the split itself, not a copy of its array
        return split
    return Split(split.x[idx], split.y[idx])
