"""Two sweep workers started at once against one PostgreSQL-backed Optuna study: 8 grid points trained, each
exactly once, all 8 in the registry. The test starts its own PostgreSQL server (Debian's package; installed
with apt-get when missing and running as root) on a Unix socket in a temporary folder."""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from cnnlab.experiments import registry
from conftest import ROOT


def pg_bin() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(install, env=env, capture_output=True)
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is not installed and cannot be installed here (needs root and apt-get)")
    return os.path.dirname(found[-1])


@pytest.fixture()
def postgres():
    """A throwaway server: initdb, start on a socket in a temporary folder, yield its SQLAlchemy URL, stop."""
    pytest.importorskip("psycopg2")
    # Not pytest's tmp_path: its parents are private to root, and the server must reach its folder.
    base = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    bindir, data, sock = pg_bin(), base / "pgdata", base / "sock"
    sock.mkdir()
    # PostgreSQL refuses to run as root: as root, run it as Debian's postgres user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    tmp_path = base
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "cnnlab"],
                   check=True, capture_output=True)
    port = 55432  # only the socket file's name: listen_addresses='' opens no TCP port
    subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", str(data), "-w", "-l", str(tmp_path / "pg.log"), "-o",
                    f"-p {port} -k {sock} -c listen_addresses=''", "start"], check=True, capture_output=True)
    try:
        subprocess.run([*as_user, f"{bindir}/createdb", "-h", str(sock), "-p", str(port), "-U", "cnnlab", "sweeps"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg2://cnnlab@/sweeps?host={sock}&port={port}"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_two_workers_share_a_postgres_study(real_data, postgres, tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "cnnlab", "sweep", "mlp", "--dataset", "mnist", "--epochs", "2",
           "--set", "train_subset=1000", "--set", "test_subset=200", "--set", "threads=1",
           "--grid", "optimizer=sgd,adam", "--grid", "lr=1e-4,1e-3,1e-2,1e-1",
           "--study", "pg", "--storage", postgres, "--runs", str(runs), "--top", "0"]
    env = {**os.environ, "CNNLAB_DATA": str(real_data)}
    started = time.monotonic()
    workers = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err for _, err in outs]
    study = optuna.load_study(study_name="pg", storage=postgres)
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    points = [tuple(sorted(t.params.items())) for t in done]
    assert len(points) == len(set(points)) == 8 and len(study.trials) == 8
    per_worker = [sum(line.startswith("trial ") for line in out.splitlines()) for out, _ in outs]
    assert sum(per_worker) == 8, per_worker  # between them, each point trained exactly once
    rows = registry.runs(runs / registry.FILENAME, name="pg-p")
    assert len(rows) == 8 and all(r["status"] in ("finished", "pruned") for r in rows)
    print(f"2 workers, PostgreSQL study: 8 trials in {time.monotonic() - started:.0f} s, split {per_worker}")
