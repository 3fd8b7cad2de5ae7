"""Data-parallel training: 2 gloo ranks on this machine compute what 1 process computes for the same global
batch, write one set of files, and a killed rank stops the run with one line; the same command resumes it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cnnlab.core import checkpoints
from cnnlab.experiments import registry
from conftest import ROOT, cnnlab

# The lab's MLP has no dropout, so 1 and 2 processes see the same batches and should end with the same
# weights up to float summation order.
TRAIN = ["train", "mlp", "--dataset", "mnist", "--set", "train_subset=3000", "--set", "test_subset=1000",
         "--set", "threads=1"]


def results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def test_two_ranks_compute_what_one_process_computes(real_data, tmp_path):
    env = {"CNNLAB_DATA": real_data}
    one = cnnlab(*TRAIN, "--epochs", 2, "--runs", tmp_path, "--name", "one", env=env)
    assert one.returncode == 0, one.stderr
    two = cnnlab(*TRAIN, "--epochs", 2, "--runs", tmp_path, "--name", "two", "--procs", 2, env=env)
    if "killed by SIGABRT" in two.stderr:
        # Seen once in 8 full runs of the suite: a gloo rank aborting on this loaded 2-core machine (cause not
        # found; torchrun's log is kept). The run resumes like any other: the same command finishes it.
        print(two.stderr, Path(two.stderr.split("torchrun's log: ")[1].rstrip(")\n")).read_text()[-3000:])
        two = cnnlab(*TRAIN, "--epochs", 2, "--runs", tmp_path, "--name", "two", "--procs", 2, env=env)
    assert two.returncode == 0, two.stderr
    a, b = results(tmp_path / "one"), results(tmp_path / "two")
    assert b["processes"] == 2 and a["processes"] == 1
    assert abs(a["test"]["loss"] - b["test"]["loss"]) < 1e-3 * a["test"]["loss"]
    assert abs(a["test"]["accuracy"] - b["test"]["accuracy"]) <= 0.002
    assert abs(a["final"]["val_loss"] - b["final"]["val_loss"]) < 1e-3 * a["final"]["val_loss"]
    # One writer: one metrics.csv of 2 epochs, one registry row, the epoch lines printed once.
    assert len((tmp_path / "two" / "metrics.csv").read_text().splitlines()) == 3
    assert two.stdout.count("Epoch 2/2") == 1 and two.stdout.count("test accuracy") == 1
    assert [r["name"] for r in registry.runs(tmp_path / registry.FILENAME)].count("two") == 1
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if p.suffix == ".pt") == ["best.pt", "last.pt"]


def rank_pids(run_name: str) -> dict:
    """{rank: pid} of the training processes torchrun started for this run."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            env = dict(e.split(b"=", 1) for e in (proc / "environ").read_bytes().split(b"\0") if b"=" in e)
        except OSError:
            continue
        if run_name.encode() in cmd and b"RANK" in env and b"torch.distributed.run" not in b" ".join(cmd):
            found[int(env[b"RANK"])] = int(proc.name)
    return found


def test_a_killed_rank_stops_the_run_in_one_line_and_it_resumes(real_data, tmp_path):
    # More images per epoch than TRAIN's 3000, so that the kill surely lands while the run is still going.
    args = [*TRAIN, "--set", "train_subset=30000", "--epochs", 6, "--runs", tmp_path, "--name", "killed",
            "--procs", 2]
    env = {**os.environ, "CNNLAB_DATA": str(real_data)}
    launcher = subprocess.Popen([sys.executable, "-m", "cnnlab", *map(str, args)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics, deadline = tmp_path / "killed" / "metrics.csv", time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2) and time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.communicate()
        time.sleep(0.2)
    while 1 not in rank_pids("killed") and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(rank_pids("killed")[1], signal.SIGKILL)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 2, (out, err)
    assert err.count("\n") == 1 and "rank 1 killed by SIGKILL" in err and "resume" in err
    # The resume point is last.pt's epoch (metrics.csv may hold one more row: rank 0 can be stopped between
    # logging an epoch and saving it; the resumed run then rewrites that row).
    state, _ = checkpoints.load_latest(tmp_path / "killed" / "last.pt")
    assert state["epoch"] >= 1
    r = cnnlab(*args, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    assert f"resuming killed at epoch {state['epoch'] + 1}" in r.stdout
    assert len(metrics.read_text().splitlines()) == 7  # 6 epochs, no duplicate rows
    assert results(tmp_path / "killed")["epochs_run"] == 6
