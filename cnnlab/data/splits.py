"""The splits a run trains, validates and tests on: a seeded, stratified validation hold-out of the training set
(or the test set, as the lab did), and seeded random subsets for quick runs."""

import os
from pathlib import Path

import torch

from cnnlab.core import config
from cnnlab.core.errors import CnnlabError
from cnnlab.data import datasets
from cnnlab.data.datasets import Split


def prepare_data(cfg: config.Config, data_dir: str | None = None, digest: str = ""):
    """Load the data set and hold out a stratified validation split (or use the test set if asked). A `--data`
    path that is gone is looked for, by the run's recorded `digest`, in the data folder and the working folder."""
    data = cfg.data
    if data and digest and not Path(data).exists():
        search = [d for d in (data_dir, os.environ.get("CNNLAB_DATA"), ".") if d]
        data = str(datasets.find_moved(Path(data), digest, search) or data)
    ds = datasets.load(cfg.dataset, data or None, data_dir)
    if data != cfg.data:
        ds.source += f" (moved from {cfg.data}: found by its digest)"
    if cfg.test_subset:
        ds.test = _sample(ds.test, torch.arange(len(ds.test)), cfg.test_subset, cfg.seed)
    everything = torch.arange(len(ds.train))
    if cfg.validate_on == "test":
        return ds, _sample(ds.train, everything, cfg.train_subset, cfg.seed), ds.test
    if cfg.val_split == 0:
        return ds, _sample(ds.train, everything, cfg.train_subset, cfg.seed), None
    train_idx, val_idx = stratified_split(ds.train.y, cfg.val_split, cfg.seed)
    if len(train_idx) == 0:
        raise CnnlabError(f"val_split {cfg.val_split} leaves no training images")
    # train_subset shrinks the hold-out with it, keeping val_split's proportion: 3,000 training images are
    # validated on 333, not on the 6,000 the whole set would hold out (a quick run stays quick).
    val_n = round(cfg.train_subset * cfg.val_split / (1 - cfg.val_split)) if cfg.train_subset else 0
    return ds, _sample(ds.train, train_idx, cfg.train_subset, cfg.seed), _sample(ds.train, val_idx, val_n, cfg.seed)


def _sample(split: Split, idx: torch.Tensor, n: int, seed: int) -> Split:
    """The images at `idx`, or a seeded random `n` of them (folders are sorted by class: never take the first n)."""
    if 0 < n < len(idx):
        idx = torch.sort(idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))[:n]]).values
    return Split(split.x[idx], split.y[idx])


def stratified_split(y: torch.Tensor, fraction: float, seed: int):
    """Indices (train, val): `fraction` of every class held out, chosen by a seeded permutation."""
    if len(y) == 0:
        return y.new_zeros(0), y.new_zeros(0)
    g = torch.Generator().manual_seed(seed)
    train_idx, val_idx = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(len(idx) * fraction))
        val_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return torch.sort(torch.cat(train_idx)).values, torch.sort(torch.cat(val_idx)).values
