"""Hyperparameter sweeps on Optuna: a grid (or TPE) search over config keys, median pruning on validation
accuracy per epoch, kept in an Optuna RDB storage (SQLite beside the runs by default; any SQLAlchemy URL, e.g.
PostgreSQL) so that a sweep can be stopped and continued, and shared by workers on one or many machines.

A grid point is handed out through a claims table in the same database. Its primary key makes a second claim
of the same point fail, so two workers never train the same point. A point whose trial failed, or whose
worker died, can be claimed again. Each grid point trains in its own run folder, so a point cut short by
Ctrl-C resumes where it stopped.
"""

import itertools
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.core import config, validation
from cnnlab.core.errors import CnnlabError
from cnnlab.experiments import registry
from cnnlab.experiments.runs import train_run
from cnnlab.reports import report
from cnnlab.reports.facts import read_history
from cnnlab.training.callbacks import Callback

# Short names for the keys a sweep varies most; any config key works too.
ALIASES = {"lr": "optimizer.lr", "optimizer": "optimizer.name", "momentum": "optimizer.momentum",
           "weight_decay": "optimizer.weight_decay", "batch": "batch_size"}
HEARTBEAT_SECONDS = 30  # a trial with no heartbeat for GRACE_SECONDS is failed by the next worker that starts
GRACE_SECONDS = 120


@dataclass
class Space:
    grid: dict = field(default_factory=dict)    # key -> list of values (categorical)
    ranges: dict = field(default_factory=dict)  # key -> {"low", "high", "log"} (TPE only)


def parse_grid(items: list) -> dict:
    """`--grid optimizer=sgd,adam --grid lr=1e-3,1e-2` -> {"optimizer.name": ["sgd", "adam"], ...}."""
    grid = {}
    for item in items:
        key, raw = item.split("=", 1) if "=" in item else (item, "")
        values = [config.parse_set(f"x={v.strip()}")[1] for v in raw.split(",") if v.strip()]
        if not values:
            raise CnnlabError(f"--grid expects key=value1,value2,..., got {item!r}")
        grid[ALIASES.get(key.strip(), key.strip())] = values
    return grid


def load_space(path: str) -> Space:
    """A TOML search space: [grid] key = [values...]; [range] key = {low = .., high = .., log = true}."""
    d = config.load_toml(path)
    unknown = set(d) - {"grid", "range"}
    if unknown:
        raise CnnlabError(f"{path}: unknown section(s) {sorted(unknown)}; use [grid] and [range]")
    grid = {ALIASES.get(k, k): v for k, v in d.get("grid", {}).items()}
    ranges = {ALIASES.get(k, k): v for k, v in d.get("range", {}).items()}
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise CnnlabError(f"{path}: grid.{k} must be a non-empty list of values")
    for k, v in ranges.items():
        if not isinstance(v, dict) or not {"low", "high"} <= set(v) or not v["low"] < v["high"]:
            raise CnnlabError(f"{path}: range.{k} must be {{low = a, high = b}} with a < b")
    return Space(grid, ranges)


def points(space: Space) -> list:
    keys = list(space.grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*space.grid.values())]


def configure(base: config.Config, params: dict) -> config.Config:
    cfg = config.from_dict({}, base)
    for key, value in params.items():
        config.set_value(cfg, key, value)
    validation.validate(cfg)
    return cfg


def _optuna():
    try:
        import optuna
    except ImportError:
        raise CnnlabError("sweeps need Optuna: pip install optuna") from None
    import warnings
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats and PartialFixedSampler are marked experimental; they are what makes workers safe to share.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def storage_url(url: str, runs: Path) -> str:
    return url or f"sqlite:///{(Path(runs) / 'sweeps.sqlite').resolve()}"


class Claims:
    """Grid points taken by workers: (study, point) is unique, so an INSERT is an atomic claim."""

    def __init__(self, engine, study: str):
        import sqlalchemy as sa
        self.sa, self.engine, self.study = sa, engine, study
        self.me = (socket.gethostname(), os.getpid())
        with engine.begin() as c:
            c.execute(sa.text("CREATE TABLE IF NOT EXISTS cnnlab_claims (study VARCHAR(512), point VARCHAR(2048), "
                              "trial INTEGER, host VARCHAR(255), pid INTEGER, claimed FLOAT, "
                              "PRIMARY KEY (study, point))"))

    def rows(self) -> dict:
        with self.engine.connect() as c:
            got = c.execute(self.sa.text("SELECT point, trial, host, pid FROM cnnlab_claims WHERE study = :s"),
                            {"s": self.study})
            return {r.point: r for r in got}

    def take(self, key: str, old=None) -> bool:
        """Claim `key`; `old` is the dead claim being replaced (only one worker's UPDATE can match it)."""
        sa, values = self.sa, {"s": self.study, "p": key, "h": self.me[0], "pid": self.me[1], "t": time.time()}
        with self.engine.begin() as c:
            if old is None:
                try:
                    c.execute(sa.text("INSERT INTO cnnlab_claims VALUES (:s, :p, NULL, :h, :pid, :t)"), values)
                    return True
                except sa.exc.IntegrityError:
                    return False
            done = c.execute(sa.text("UPDATE cnnlab_claims SET trial = NULL, host = :h, pid = :pid, claimed = :t "
                                     "WHERE study = :s AND point = :p AND host = :oh AND pid = :opid AND "
                                     "(trial = :ot OR (trial IS NULL AND :ot IS NULL))"),
                             {**values, "oh": old.host, "opid": old.pid, "ot": old.trial})
            return done.rowcount == 1

    def attach(self, key: str, trial_id: int):
        with self.engine.begin() as c:
            c.execute(self.sa.text("UPDATE cnnlab_claims SET trial = :t WHERE study = :s AND point = :p"),
                      {"t": trial_id, "s": self.study, "p": key})


def _dead(row, states: dict, optuna) -> bool:
    """May this claim be taken over? Its trial failed, or its worker (on this host) is gone."""
    state = states.get(row.trial)
    if state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
        return False
    if state == optuna.trial.TrialState.FAIL:
        return True
    if row.host == socket.gethostname():
        try:
            os.kill(row.pid, 0)
        except ProcessLookupError:
            return True
    return False  # another host's worker: its trial turns FAIL once its heartbeat stops (fail_stale_trials)


class ReportToOptuna(Callback):
    """Reports validation accuracy per epoch to the trial and stops training when the median pruner says so."""

    def __init__(self, trial):
        self.trial, self.pruned = trial, False

    def on_train_begin(self, logs=None):
        for epoch, earlier in enumerate(self.trainer.history):  # a resumed point: its earlier epochs count too
            self.trial.report(earlier.get("val_accuracy", 0.0), epoch)

    def on_epoch_end(self, epoch, logs):
        self.trial.report(logs.get("val_accuracy", 0.0), epoch)
        if self.trial.should_prune():
            self.pruned, self.trainer.stop_training = True, True


def run_sweep(base: config.Config, space: Space, study_name: str, runs: Path, url: str = "", trials: int = 0,
              sampler: str = "grid", stop_after: int = 0, data_dir: str | None = None, seed: int = 0, say=print):
    """Run trials until the study has `trials` finished ones (the whole grid by default), or `stop_after` here."""
    optuna = _optuna()
    runs = Path(runs)
    runs.mkdir(parents=True, exist_ok=True)
    grid = points(space) if sampler == "grid" else []
    if sampler == "grid" and (space.ranges or not grid):
        raise CnnlabError("a grid sweep needs --grid values and no [range] (use --sampler tpe for ranges)")
    for p in grid or [{}]:
        configure(base, p)  # every point is checked before anything trains
    storage, study, claims = _open(optuna, storage_url(url, runs), study_name, seed, bool(grid))
    wanted = json.dumps({"base": config.to_dict(base), "grid": space.grid, "ranges": space.ranges}, sort_keys=True)
    if study.user_attrs.get("space", wanted) != wanted:
        raise CnnlabError(f"study {study_name!r} was started with another preset or search space: use --study NAME")
    study.set_user_attr("space", wanted)
    db, done_here = runs / registry.FILENAME, 0

    def objective(trial, params, run_name):
        if claims:
            claims.attach(json.dumps(params, sort_keys=True), trial._trial_id)
            for key, value in params.items():
                trial.suggest_categorical(key, space.grid[key])  # fixed by the sampler to this point's value
        else:
            params = {k: trial.suggest_categorical(k, v) for k, v in space.grid.items()}
            params |= {k: trial.suggest_float(k, r["low"], r["high"], log=bool(r.get("log"))) for k, r in
                       space.ranges.items()}
            run_name = f"{study_name}-t{trial.number:03d}"
        cfg, watcher = configure(base, params), ReportToOptuna(trial)
        run_dir = runs / run_name
        trial.set_user_attr("run", str(run_dir.resolve()))
        say(f"trial {trial.number}: {params} -> {run_dir}")
        result = train_run(cfg, run_dir, data_dir, say=say, registry_db=db, extra_callbacks=[watcher])
        best = max((h.get("val_accuracy", 0.0) for h in read_history(run_dir, None)), default=0.0)
        trial.set_user_attr("test_accuracy", result.test.accuracy if result.test else None)
        if watcher.pruned:
            registry.Recorder(db, run_dir, say).end("pruned", result.test, "stopped by the median pruner")
            raise optuna.TrialPruned()
        return best

    while not stop_after or done_here < stop_after:
        optuna.storages.fail_stale_trials(study)  # trials whose worker stopped beating, on any host
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()
                    and t.state != optuna.trial.TrialState.FAIL]
        if grid:
            point = _claim_next(claims, grid, study, optuna)
            if point is None:
                break
            i, params = point
            study.sampler = optuna.samplers.PartialFixedSampler(params, optuna.samplers.RandomSampler(seed))
            args = (params, f"{study_name}-p{i:02d}")
        else:
            if len(finished) >= (trials or 20):
                break
            # A fresh stream for every trial and worker: a sampler re-seeded as before would draw the same
            # first points again in a continued sweep or in a second worker.
            stream = f"{seed}/{len(study.trials)}/{socket.gethostname()}/{os.getpid()}"
            study.sampler = optuna.samplers.TPESampler(seed=_seed_of(stream))
            args = ({}, "")
        study.optimize(lambda t: objective(t, *args), n_trials=1, catch=())
        done_here += 1
    return study


def _open(optuna, url: str, study_name: str, seed: int, grid: bool):
    """Storage, study and claims table. Workers starting at once on a new database race to create the same
    tables (PostgreSQL then raises a duplicate-type error in one of them): the loser waits and tries again."""
    import random

    import sqlalchemy
    for attempt in range(6):
        try:
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS)
            study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
                                        load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=seed))
            return storage, study, Claims(storage.engine, study_name) if grid else None
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.DuplicatedStudyError) as e:
            if attempt == 5:
                raise CnnlabError(f"cannot open the sweep storage {url.split('@')[-1]}: {e}") from None
            time.sleep(0.5 + random.random())
        except (ValueError, ImportError) as e:  # a malformed URL or a missing database driver
            raise CnnlabError(f"cannot open the sweep storage {url.split('@')[-1]}: {e}") from None


def ranking(study) -> list:
    """Finished trials, best validation accuracy first; pruned ones after the completed ones."""
    import optuna
    order = {optuna.trial.TrialState.COMPLETE: 0, optuna.trial.TrialState.PRUNED: 1}
    rows = [{"trial": t.number, "state": t.state.name.lower(), "params": t.params,
             "best_val_accuracy": t.value if t.value is not None else max(t.intermediate_values.values(), default=0),
             "epochs": len(t.intermediate_values), "test_accuracy": t.user_attrs.get("test_accuracy"),
             "run": t.user_attrs.get("run", "")} for t in study.get_trials(deepcopy=False) if t.state in order]
    rows.sort(key=lambda r: (order[getattr(optuna.trial.TrialState, r["state"].upper())], -r["best_val_accuracy"]))
    return rows


def ranking_table(rows: list) -> str:
    """Markdown: rank, trial, each varied key, status, epochs, best validation and test accuracy."""
    keys = list(rows[0]["params"]) if rows else []
    return report.table(["rank", "trial", *keys, "status", "epochs", "best val acc", "test acc"],
                        [[rank, r["trial"], *(r["params"].get(k) for k in keys), r["state"], r["epochs"],
                          f"{r['best_val_accuracy']:.4f}", report.number(r["test_accuracy"], ".4f", "-")]
                         for rank, r in enumerate(rows, 1)])


def _seed_of(text: str) -> int:
    import hashlib
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def _claim_next(claims: Claims, grid: list, study, optuna):
    """The first point nobody holds (or whose holder is dead), claimed atomically; None when none is left."""
    held = claims.rows()
    states = {t._trial_id: t.state for t in study.get_trials(deepcopy=False)}
    for i, params in enumerate(grid):
        key = json.dumps(params, sort_keys=True)
        row = held.get(key)
        if row is None and claims.take(key):
            return i, params
        if row is not None and _dead(row, states, optuna) and claims.take(key, old=row):
            return i, params
    return None

