"""The run registry: every training recorded, a killed one shown as crashed (not lost), then resumed."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from cnnlab.experiments import registry
from cnnlab.models import presets
from cnnlab.models.inference import Evaluation
from conftest import ROOT, cnnlab

# The lab's MLP on an MNIST subset: a second or so per epoch, so a test can watch, kill and resume it. Momentum
# 0.9 (the lab's SGD() has none) so that two epochs on 1,500 images are well past chance.
TRAIN = ["train", "mlp", "--dataset", "mnist", "--name", "digits", "--set", "train_subset=1500",
         "--set", "test_subset=100", "--set", "optimizer.momentum=0.9"]


def listed(runs, *filters):
    r = cnnlab("runs", "--runs", runs, "--json", *filters)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_finished_run_is_recorded_with_its_numbers(real_data, tmp_path):
    r = cnnlab(*TRAIN, "--runs", tmp_path, "--epochs", 2, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    [row] = listed(tmp_path)
    assert row["name"] == "digits" and row["status"] == "finished" and row["dataset"] == "mnist"
    assert row["epochs"] == 2 and row["planned_epochs"] == 2 and row["params"] > 0
    assert 0.5 < row["test_accuracy"] <= 1 and 0 < row["best_val_accuracy"] <= 1
    assert json.loads(row["config"])["epochs"] == 2
    assert listed(tmp_path, "--status", "crashed") == []
    table = cnnlab("runs", "--runs", tmp_path).stdout
    assert "digits" in table and "finished" in table and "2/2" in table


def test_a_killed_run_shows_as_crashed_and_resumes(real_data, tmp_path):
    # 500 planned epochs of 1,500 images: the kill lands long before the run could end by itself (with 8 the
    # child could finish, and release its lock, between the wait below and the check).
    cmd = [sys.executable, "-m", "cnnlab", *TRAIN, "--runs", str(tmp_path), "--epochs", "500"]
    env = {**os.environ, "CNNLAB_DATA": str(real_data)}
    child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db, deadline = tmp_path / registry.FILENAME, time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for one whole epoch to be recorded, then kill mid-way
        rows = registry.runs(db) if db.exists() else []
        # The row is updated at an epoch's end just before last.pt is written: wait for both.
        if rows and rows[0]["epochs"] >= 1 and (tmp_path / "digits" / "last.pt").exists():
            break
        assert child.poll() is None, child.stderr.read()
        time.sleep(0.2)
    [row] = registry.runs(db)
    assert row["status"] == "running"  # its process still holds the run's lock
    child.send_signal(signal.SIGKILL)
    child.wait()
    [row] = listed(tmp_path, "--status", "crashed")
    assert row["epochs"] >= 1 and row["best_val_accuracy"] is not None  # what it trained is not lost
    target = row["epochs"] + 2  # resumed with fewer planned epochs, so that it finishes soon
    r = cnnlab(*TRAIN, "--runs", tmp_path, "--epochs", target, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0 and "resuming digits" in r.stdout, r.stderr
    [row] = listed(tmp_path)
    assert row["status"] == "finished" and row["epochs"] == target and row["test_accuracy"] is not None


def test_ctrl_c_is_interrupted_and_a_failure_says_why(real_data, tmp_path):
    cmd = [sys.executable, "-m", "cnnlab", *TRAIN, "--runs", str(tmp_path), "--epochs", "500"]  # still going at ^C
    child = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "CNNLAB_DATA": str(real_data)},
                             stdout=subprocess.DEVNULL, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not (tmp_path / "digits" / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=60) == 130
    [row] = listed(tmp_path)
    assert row["status"] == "interrupted"
    # An absurd learning rate makes the loss NaN: the run stops with one line and the registry says so.
    r = cnnlab(*TRAIN, "--name", "nan", "--runs", tmp_path, "--epochs", 1,
               "--set", "optimizer.lr=1e30", env={"CNNLAB_DATA": real_data})
    assert r.returncode == 2
    [row] = listed(tmp_path, "--name", "nan")
    assert row["status"] == "failed" and "loss became" in row["message"]


def test_an_unwritable_registry_does_not_stop_training(real_data, tmp_path):
    db = tmp_path / registry.FILENAME
    db.write_text("this is not a database")
    r = cnnlab(*TRAIN, "--runs", tmp_path, "--epochs", 1, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("run registry") == 1 and "training goes on" in r.stdout
    assert (tmp_path / "digits" / "results.json").exists()
    try:
        sqlite3.connect(db).execute("SELECT 1 FROM runs")
        raise AssertionError("the damaged registry was silently replaced")
    except sqlite3.DatabaseError:
        pass
    r = cnnlab("runs", "--runs", tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a database" in r.stderr


def test_writes_a_lock_held_off_go_in_with_the_next_one(tmp_path, monkeypatch):
    """Another process holding the registry locked past the wait costs no row, epoch or end: one warning, and
    the missed writes land, in order, with the first write after the lock is gone."""
    monkeypatch.setattr(registry, "LOCK_WAIT_S", 0.1)
    db, said = tmp_path / registry.FILENAME, []
    registry.connect(db).close()
    recorder = registry.Recorder(db, tmp_path / "run", said.append)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    recorder.start(presets.preset("mlp"), "mnist", 3_000_000)
    recorder.epoch([{"val_accuracy": 0.5, "val_loss": 1.0, "seconds": 2.0}])
    assert len(said) == 1 and "is locked" in said[0] and "tries again" in said[0]
    holder.execute("ROLLBACK")

    def row():
        return sqlite3.connect(db).execute("SELECT status, epochs, best_val_accuracy, test_accuracy FROM runs").fetchall()
    assert row() == []  # nothing went in while the lock was held
    recorder.epoch([{"val_accuracy": 0.5, "val_loss": 1.0, "seconds": 2.0},
                    {"val_accuracy": 0.75, "val_loss": 0.5, "seconds": 2.0}])
    assert row() == [("running", 2, 0.75, None)]
    recorder.end("finished", Evaluation(loss=0.9, accuracy=0.7, per_class_accuracy=[], confusion=[]))
    assert row() == [("finished", 2, 0.75, 0.7)] and len(said) == 1 and not recorder.broken


def test_a_registry_from_before_the_device_column_lists_while_another_process_holds_it(tmp_path, monkeypatch):
    db = tmp_path / registry.FILENAME
    old = sqlite3.connect(db)
    old.execute(registry.SCHEMA.replace(",\n    device TEXT)", ")"))
    old.execute("INSERT INTO runs (name, status, started, epochs, planned_epochs, path, host) "
                "VALUES ('old', 'finished', 0, 3, 3, '/nowhere/old', 'elsewhere')")
    old.commit()
    old.execute("BEGIN IMMEDIATE")  # a writer in another process: the column cannot be added now
    monkeypatch.setattr(registry, "LOCK_WAIT_S", 0.1)
    try:
        [row] = registry.runs(db)
        assert row["name"] == "old" and row["status"] == "finished" and "device" not in row
    finally:
        old.rollback()
        old.close()
    assert "device" in registry.runs(db)[0]  # the next reader with the file free adds it
