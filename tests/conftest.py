import gzip
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

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


def cnnlab(*args, env=None, timeout=600):
    """Run the CLI as a user does, in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=ROOT)


def pytest_sessionfinish(session, exitstatus):
    import shutil
    shutil.rmtree(os.environ["CNNLAB_CACHE"], ignore_errors=True)
