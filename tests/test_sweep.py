"""`cnnlab sweep`: a grid over optimizer x learning rate, stopped and continued, shared by two workers at once,
never training a point twice; its trials land in the registry and a report ranks them."""

import json
import os
import subprocess
import sys

import optuna
import pytest

from cnnlab.core.errors import CnnlabError
from cnnlab.experiments import registry, sweep
from conftest import ROOT, cnnlab

GRID = ["--grid", "optimizer=sgd,adam", "--grid", "lr=1e-3,1e-1"]
SWEEP = ["sweep", "mlp", "--dataset", "mnist", "--epochs", 2, "--set", "train_subset=1200",
         "--set", "test_subset=200", *GRID, "--study", "s"]


def finished_points(runs):
    study = optuna.load_study(study_name="s", storage=sweep.storage_url("", runs))
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    return [tuple(sorted(t.params.items())) for t in done], study


def test_stopped_and_continued_sweep_runs_every_point_once(real_data, tmp_path):
    r = cnnlab(*SWEEP, "--runs", tmp_path, "--stop-after", 1, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    assert len(finished_points(tmp_path)[0]) == 1
    r = cnnlab(*SWEEP, "--runs", tmp_path, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    points, study = finished_points(tmp_path)
    assert len(points) == len(set(points)) == 4 and len(study.trials) == 4
    assert {dict(p)["optimizer.name"] for p in points} == {"sgd", "adam"}
    assert "study s: 4 finished trial(s)" in r.stdout and "| rank | trial |" in r.stdout
    report = (tmp_path / "s-report" / "report.md").read_text()
    assert "Trials ranked by best validation accuracy" in report
    ranked = [line for line in report.splitlines() if line.startswith("| 1 |")]
    best = max(study.trials, key=lambda t: t.value if t.value is not None else -1)
    assert ranked and f"| {best.number} |" in ranked[0]  # rank 1 is the trial with the best value
    rows = registry.runs(tmp_path / registry.FILENAME, name="s-p")
    assert len(rows) == 4 and all(r["status"] in ("finished", "pruned") for r in rows)
    # A third invocation finds nothing left to do and trains nothing.
    r = cnnlab(*SWEEP, "--runs", tmp_path, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0 and "trial " not in r.stdout.split("study s:")[0]
    assert len(finished_points(tmp_path)[1].trials) == 4


def test_two_workers_at_once_share_the_grid(real_data, tmp_path):
    env = {**os.environ, "CNNLAB_DATA": str(real_data), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "cnnlab", *map(str, SWEEP), "--runs", str(tmp_path), "--set", "threads=1"]
    workers = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[1] for o in outs]
    points, study = finished_points(tmp_path)
    assert len(points) == len(set(points)) == 4 and len(study.trials) == 4
    trained = [line for out, _ in outs for line in out.splitlines() if line.startswith("trial ")]
    assert len(trained) == 4, trained  # between them, each point was trained exactly once


def test_a_changed_search_space_needs_a_new_study(real_data, tmp_path):
    r = cnnlab(*SWEEP, "--runs", tmp_path, "--stop-after", 1, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    r = cnnlab(*SWEEP, "--grid", "lr=0.5", "--runs", tmp_path, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 2 and "another preset or search space" in r.stderr and r.stderr.count("\n") == 1


def test_search_space_files_and_bad_values(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text('[grid]\noptimizer = ["sgd", "adam"]\n[range]\nlr = {low = 1e-4, high = 1e-1, log = true}\n')
    s = sweep.load_space(str(space))
    assert s.grid == {"optimizer.name": ["sgd", "adam"]} and s.ranges["optimizer.lr"]["log"] is True
    assert sweep.parse_grid(["lr=1e-3, 1e-2", "batch=32,64"]) == {"optimizer.lr": [1e-3, 1e-2],
                                                                   "batch_size": [32, 64]}
    space.write_text('[range]\nlr = {low = 1, high = 0.1}\n')
    with pytest.raises(CnnlabError, match="low = a, high = b"):
        sweep.load_space(str(space))
    r = cnnlab("sweep", "mlp", "--grid", "optimizer=sgd,lion", "--runs", tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "lion" in r.stderr
    r = cnnlab("sweep", "mlp", "--grid", "no.such.key=1,2", "--runs", tmp_path)
    assert r.returncode == 2 and "unknown config key" in r.stderr
    assert json.loads(json.dumps(sweep.points(sweep.Space({"a": [1, 2], "b": ["x"]})))) == [
        {"a": 1, "b": "x"}, {"a": 2, "b": "x"}]


def test_tpe_sweep_over_a_toml_space_continues_to_the_asked_count(real_data, tmp_path):
    space = tmp_path / "space.toml"
    space.write_text('[grid]\noptimizer = ["sgd", "adam"]\n[range]\nlr = {low = 1e-4, high = 1e-1, log = true}\n')
    tpe = ["sweep", "mlp", "--dataset", "mnist", "--epochs", 2, "--set", "train_subset=800", "--set", "test_subset=100",
           "--space", space, "--sampler", "tpe", "--study", "s", "--runs", tmp_path, "--top", 0]
    r = cnnlab(*tpe, "--trials", 2, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    r = cnnlab(*tpe, "--trials", 3, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    points, study = finished_points(tmp_path)
    assert len(study.trials) == 3 and r.stdout.count("trial 2:") == 1 and "trial 0:" not in r.stdout
    lrs = [dict(p)["optimizer.lr"] for p in points]
    assert all(1e-4 <= lr <= 1e-1 for lr in lrs) and len(set(lrs)) == 3  # sampled from the range, not a grid
