"""Kill a training run with SIGKILL at random instants, resume it each time, and check that it ends with the
same weights, bit for bit, as an uninterrupted run with the same seed.

    python scripts/crash_resume.py [--kills 20] [--seed 0]

Uses mnist-cnn on a 20,000-image subset of MNIST (CNNLAB_DATA or ../shared/data) with a resume point every
0.25 s, so some kills land while a checkpoint is being written. Exit status 0 only if every restart
succeeded, every checkpoint left behind was readable, and the final SHA-256 matches.
"""

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cnnlab.core import checkpoints  # noqa: E402
from cnnlab.core.errors import CnnlabError  # noqa: E402

ARGS = ["train", "mnist-cnn", "--epochs", "3", "--set", "train_subset=20000", "--set", "test_subset=2000",
        "--set", "autosave_seconds=0.25"]


def weights_sha256(run: Path) -> str:
    model = checkpoints.load(run / "last.pt")["model"]
    h = hashlib.sha256()
    for k in sorted(model):
        h.update(k.encode())
        h.update(model[k].contiguous().numpy().tobytes())
    return h.hexdigest()


def wait_for_write(proc, run: Path, timeout: float) -> bool:
    """Poll until a temporary checkpoint file exists (a write is in progress); False if the run ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if any(run.glob(".last.pt.*.tmp")):
            return True
        time.sleep(0.0005)
    return False


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = random.Random(a.seed)
    env = {**os.environ, "CNNLAB_DATA": os.environ.get("CNNLAB_DATA", str(ROOT.parent / "shared" / "data"))}
    runs = Path(tempfile.mkdtemp(prefix="cnnlab-crash-"))
    cmd = [sys.executable, "-m", "cnnlab", *ARGS, "--runs", str(runs)]

    start = time.perf_counter()
    subprocess.run(cmd + ["--name", "reference"], env=env, cwd=ROOT, check=True, capture_output=True)
    reference = weights_sha256(runs / "reference")
    print(f"uninterrupted run: {time.perf_counter() - start:.1f} s, weights sha256 {reference[:16]}")

    failures, kills, mid_write = [], 0, 0
    while kills < a.kills:
        proc = subprocess.Popen(cmd + ["--name", "crashed"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        run = runs / "crashed"
        delay = rng.uniform(1.5, 5.0)
        if kills % 4 == 3:  # every fourth kill waits for a checkpoint write to be under way
            if not wait_for_write(proc, run, timeout=30):
                break
            delay = -1.0
        else:
            try:
                proc.wait(timeout=delay)
                break  # finished before the kill: the run is complete
            except subprocess.TimeoutExpired:
                pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        leftovers = list(run.glob(".last.pt.*.tmp"))
        mid_write += bool(leftovers)
        try:
            state, warning = checkpoints.load_latest(run / "last.pt")
            where = "nothing saved yet" if state is None else f"epoch {state['epoch'] + 1} step {state['batch'] + 1}"
        except CnnlabError as e:
            failures.append(f"kill {kills}: unreadable checkpoint: {e}")
            where, warning = "UNREADABLE", None
        when = "at a checkpoint write" if delay < 0 else f"after {delay:.2f} s"
        print(f"kill {kills:2d} {when}: resume point {where}"
              f"{' (killed during a checkpoint write)' if leftovers else ''}{' - ' + warning if warning else ''}")
    final = subprocess.run(cmd + ["--name", "crashed"], env=env, cwd=ROOT, capture_output=True, text=True)
    if final.returncode != 0:
        failures.append(f"final restart failed: {final.stderr.strip()}")
    else:
        got = weights_sha256(runs / "crashed")
        print(f"after {kills} kills ({mid_write} during a checkpoint write): weights sha256 {got[:16]}")
        if got != reference:
            failures.append("final weights differ from the uninterrupted run")
    if kills < a.kills:
        failures.append(f"only {kills} kills happened before the run finished")
    print("FAILED: " + "; ".join(failures) if failures else "OK: same weights, bit for bit")
    shutil.rmtree(runs, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
