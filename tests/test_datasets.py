"""The source chain, digest checks, the decoded cache and the validation split."""

import gzip
import time

import pytest
import torch

from cnnlab.core.errors import CnnlabError
from cnnlab.data import datasets, splits
from conftest import write_idx_set


def test_mismatching_files_in_data_dir_are_refused(tmp_path):
    write_idx_set(tmp_path / "mnist")  # right names, wrong content
    with pytest.raises(CnnlabError, match="does not match the published sha256.*refusing"):
        datasets.load("mnist", data_dir=str(tmp_path))


def test_corrupt_gzip_is_one_clear_error(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(range(256)) * 40)[:100])
    with pytest.raises(CnnlabError, match="cannot read"):
        datasets.load("mnist", data_dir=str(tmp_path))


def test_no_source_lists_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    with pytest.raises(CnnlabError) as e:
        datasets.load("cifar10", data_dir=str(tmp_path))
    text = str(e.value)
    assert "data dir" in text and "cache" in text and "download" in text and "--data-dir" in text


def test_unknown_dataset_name():
    with pytest.raises(CnnlabError, match="unknown dataset 'imagenet'"):
        datasets.load("imagenet")


def test_real_mnist_verified_and_cached(real_data):
    ds = datasets.load("mnist", data_dir=str(real_data))
    assert ds.verified and ds.train.x.shape == (60000, 1, 28, 28) and ds.test.x.shape == (10000, 1, 28, 28)
    assert ds.train.x.dtype == torch.uint8 and ds.train.y.tolist()[:5] == [5, 0, 4, 1, 9]
    start = time.perf_counter()
    again = datasets.load("mnist", data_dir=str(real_data))
    assert time.perf_counter() - start < 1.0, "the second load must come from the decoded cache"
    assert "decoded cache" in again.source and torch.equal(again.train.x, ds.train.x)


def test_real_fashion_mnist(real_data):
    ds = datasets.load("fashion-mnist", data_dir=str(real_data))
    assert ds.verified and ds.classes[0] == "T-shirt/top" and len(ds.train) == 60000


def test_stratified_split_is_seeded_and_proportional():
    y = torch.arange(1000) % 4
    tr, va = splits.stratified_split(y, 0.1, seed=3)
    assert len(va) == 100 and len(tr) == 900 and not set(tr.tolist()) & set(va.tolist())
    assert torch.bincount(y[va]).tolist() == [25, 25, 25, 25]
    assert torch.equal(va, splits.stratified_split(y, 0.1, seed=3)[1])
    assert not torch.equal(va, splits.stratified_split(y, 0.1, seed=4)[1])
