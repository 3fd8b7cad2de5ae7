"""A full disk while saving: the run stops with one clear line and the previous checkpoint survives intact.

Uses a real 10 MiB tmpfs (needs root, as on the project's machines and CI); skipped where mounting is refused.
"""

import subprocess

import pytest

from cnnlab.core import checkpoints
from conftest import cnnlab


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(mount)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_during_training_keeps_the_last_good_checkpoint(real_data, small_disk):
    # mnist-cnn's resume state is ~4.3 MB; last.pt + best.pt + a new temporary file do not fit in 10 MiB.
    r = cnnlab("train", "mnist-cnn", "--runs", small_disk, "--epochs", 3, "--set", "train_subset=500",
               "--set", "test_subset=100", "--set", "autosave_seconds=0", env={"CNNLAB_DATA": real_data})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "No space left on device" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    state = checkpoints.load(small_disk / "mnist-cnn" / "last.pt")  # whole and checksummed
    assert state["epoch"] >= 1 and not list((small_disk / "mnist-cnn").glob(".*.tmp"))
