import gzip
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("CNNLAB_DATA") or ROOT.parent / "shared" / "data")


# Every test session decodes into its own cache (shared by the CLI subprocesses it starts), never the
# user's ~/.cache/cnnlab.
os.environ["CNNLAB_CACHE"] = tempfile.mkdtemp(prefix="cnnlab-test-cache-")


@pytest.fixture(scope="session")
def real_data():
    if not (REAL_DATA / "mnist").is_dir():
        pytest.skip(f"real data not found at {REAL_DATA} (set CNNLAB_DATA)")
    return REAL_DATA


@pytest.fixture(scope="session")
def mnist_cnn_run(real_data, tmp_path_factory):
    """The mnist-cnn preset after one epoch on 3,000 real MNIST images, trained once through the CLI for every
    test that needs a real trained run folder (predict, export). He init: with the lab's glorot, 94 steps leave
    it near chance, and these tests need a model whose answers are confident."""
    runs = tmp_path_factory.mktemp("mnist-cnn-runs")
    r = cnnlab("train", "mnist-cnn", "--runs", runs, "--epochs", 1, "--set", "train_subset=3000",
               "--set", "test_subset=200", "--set", "init=he_uniform", env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    return runs / "mnist-cnn"


@pytest.fixture(scope="session")
def small_cnn_run(real_data, tmp_path_factory):
    """A small CNN after one epoch on 4,000 real MNIST images: about 93% test accuracy in under 10 s; it
    recognises drawn digits well enough for the serve and browser tests, which share it."""
    from cnnlab.core import config
    from cnnlab.experiments.runs import train_run
    from cnnlab.models import presets
    conv, dense = presets.conv, presets.dense
    cfg = config.from_dict({
        "dataset": "mnist", "epochs": 1, "batch_size": 32, "init": "he_uniform",
        "layers": [conv(16, 5), presets.MAXPOOL, conv(32, 5), presets.MAXPOOL, presets.FLATTEN, dense(64),
                   presets.LOGITS],
        "optimizer": {"name": "adam", "lr": 2e-3},
        "train_subset": 4000, "test_subset": 300, "validate_on": "test"})
    run_dir = tmp_path_factory.mktemp("small-cnn") / "digits"
    train_run(cfg, run_dir, str(real_data), say=lambda *_: None)
    return run_dir


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, n_train=60, n_test=20, gz=True, seed=0):
    """The four MNIST-named IDX files with random content (so they will NOT match the published digests)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": np.arange(n_test) % 10}
    for name, a in arrays.items():
        data = idx_bytes(a)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def picture_folder(root: Path, classes=("cat", "dog"), per_class=4, size=(8, 8), mode="RGB", ext="png",
                   splits=("train", "test"), seed=2) -> Path:
    """Noise pictures `size` (width, height) at <split>/<class>/NN.ext, or at <class>/NN.ext with splits=()."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    for split in splits or ("",):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / split / c / f"{i:02d}.{ext}")
    return root


def folder_and_archives(root: Path, zip_prefix: str = "") -> list:
    """`root`, and the same files in root's parent as a .tar.gz (under one top folder) and a .zip (under
    `zip_prefix`): the three forms a picture folder comes in."""
    tar_path, zip_path = root.parent / "pets.tar.gz", root.parent / "pets.zip"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(root, arcname="pets")
    with zipfile.ZipFile(zip_path, "w") as z:
        for p in root.rglob("*.png"):
            z.write(p, zip_prefix + p.relative_to(root).as_posix())
    return [root, tar_path, zip_path]


def cnnlab(*args, env=None, timeout=600):
    """Run the CLI as a user does, in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=ROOT)


def pytest_sessionfinish(session, exitstatus):
    import shutil
    shutil.rmtree(os.environ["CNNLAB_CACHE"], ignore_errors=True)
