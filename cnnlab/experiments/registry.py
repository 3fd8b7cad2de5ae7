"""The run registry: one SQLite row per run folder, in `registry.sqlite` beside the runs.

A training records itself when it starts, after every epoch and when it ends. A process killed outright
cannot write its end, so a row still marked `running` whose run folder is no longer locked (the OS drops the
lock when the process dies) is shown as `crashed`: the registry never loses a run, and never lies about one.
The registry is a convenience: if it cannot be written, training warns once and goes on. A registry another
process holds locked past the wait is retried: the writes it missed go in, in order, with the next one.
"""

import json
import os
import socket
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from cnnlab.core import config
from cnnlab.core.errors import CnnlabError
from cnnlab.core.locks import is_training
from cnnlab.models.inference import Evaluation
from cnnlab.reports import facts
from cnnlab.reports.report import number
from cnnlab.training.callbacks import Callback

FILENAME = "registry.sqlite"
SCHEMA = """CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, preset TEXT, dataset TEXT, status TEXT,
    started REAL, ended REAL, epochs INTEGER, planned_epochs INTEGER,
    best_val_accuracy REAL, best_val_loss REAL, test_accuracy REAL, test_loss REAL,
    params INTEGER, seconds_per_epoch REAL, message TEXT, config TEXT, path TEXT UNIQUE, host TEXT, pid INTEGER,
    device TEXT)"""
LOCK_WAIT_S = 30  # how long a write waits for another process's lock on the registry
# Every status a run can have in the registry: "pruned" is a sweep trial the pruner stopped; "running?" another
# host's run, which this one cannot check
STATUSES = ("running", "running?", "finished", "stopped early", "pruned", "interrupted", "failed", "crashed")


def connect(db: Path) -> sqlite3.Connection:
    db = Path(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db, timeout=LOCK_WAIT_S)  # several trainings (a sweep, a lab) may write at once: wait, don't fail
    con.row_factory = sqlite3.Row
    con.execute(SCHEMA)
    if "device" not in {row[1] for row in con.execute("PRAGMA table_info(runs)")}:  # a registry from before
        try:
            con.execute("ALTER TABLE runs ADD COLUMN device TEXT")
        except sqlite3.OperationalError:  # added first by another process, or the file is locked or read-only:
            pass  # reading works without the column, and a write meets the lock where _write handles it
    return con


class Recorder:
    """What a training writes. Every write is its own short transaction, so a kill leaves the last one whole."""

    def __init__(self, db: Path, run_dir: Path, say=print, enabled: bool = True):
        self.db, self.path, self.say, self.broken = Path(db), str(Path(run_dir).resolve()), say, not enabled
        self.pending = []  # writes a lock held off, oldest first: each one assumes the ones before it went in

    def _write(self, sql: str, values: tuple):
        if self.broken:
            return
        self.pending.append((sql, values))
        try:
            with closing(connect(self.db)) as con, con:  # one transaction: all the pending writes or none
                for statement in self.pending:
                    con.execute(*statement)
        except sqlite3.Error as e:  # a locked or read-only registry must not cost a training
            if getattr(e, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                if len(self.pending) == 1:
                    self.say(f"warning: run registry {self.db} is locked ({e}); training goes on, and the next "
                             f"write tries again")
                return
            self.broken = True
            self.say(f"warning: run registry {self.db} not updated ({e}); training goes on")
        self.pending.clear()

    def start(self, cfg, dataset: str, params: int, device: str = "cpu"):
        self._write("""INSERT INTO runs (name, preset, dataset, status, started, ended, epochs, planned_epochs,
                params, config, path, host, pid, message, device)
                VALUES (?,?,?,'running',?,NULL,0,?,?,?,?,?,?,NULL,?)
            ON CONFLICT(path) DO UPDATE SET status='running', ended=NULL, planned_epochs=excluded.planned_epochs,
                params=excluded.params, config=excluded.config, dataset=excluded.dataset, host=excluded.host,
                pid=excluded.pid, message=NULL, device=excluded.device""",
                    (Path(self.path).name, cfg.preset, dataset, time.time(), cfg.epochs, params,
                     json.dumps(config.to_dict(cfg)), self.path, socket.gethostname(), os.getpid(), device))

    def fresh(self):
        """A --fresh start: the old numbers belong to a run that no longer exists."""
        self._write("""UPDATE runs SET started=?, epochs=0, best_val_accuracy=NULL, best_val_loss=NULL,
            test_accuracy=NULL, test_loss=NULL, seconds_per_epoch=NULL WHERE path=?""", (time.time(), self.path))

    def epoch(self, history: list):
        self._write("""UPDATE runs SET epochs=?, best_val_accuracy=?, best_val_loss=?, seconds_per_epoch=?
            WHERE path=?""", (*epoch_columns(history), self.path))

    def end(self, status: str, test: Evaluation | None = None, message: str = ""):
        self._write("UPDATE runs SET status=?, ended=?, test_accuracy=?, test_loss=?, message=? WHERE path=?",
                    (status, time.time(), *_scores(test), message or None, self.path))


def _scores(test: Evaluation | None) -> tuple:
    """(test accuracy, test loss), or NULLs for a run without a test set."""
    return (test.accuracy, test.loss) if test else (None, None)


def epoch_columns(history: list) -> tuple:
    """(epochs, best val_accuracy, best val_loss, mean seconds per epoch) of a run's history."""
    accs = [h["val_accuracy"] for h in history if "val_accuracy" in h]
    losses = [h["val_loss"] for h in history if "val_loss" in h]
    seconds = [h["seconds"] for h in history if "seconds" in h]
    return (len(history), max(accs, default=None), min(losses, default=None),
            sum(seconds) / len(seconds) if seconds else None)


class RecordEpochs(Callback):
    """Keeps the row's epoch count and best metrics current, so a crash loses nothing already trained."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def on_epoch_end(self, epoch, logs):
        self.recorder.epoch(self.trainer.history)


def runs(db: Path, status: str = "", preset: str = "", dataset: str = "", name: str = "") -> list[dict]:
    """The recorded runs, newest first, with dead `running` rows shown as `crashed`."""
    if not Path(db).exists():
        return []
    try:
        con = connect(db)
        rows = [dict(r) for r in con.execute("SELECT * FROM runs ORDER BY started DESC, id DESC")]
        con.close()
    except sqlite3.Error as e:
        raise CnnlabError(f"{db}: cannot read the run registry ({e})") from None
    for r in rows:
        if r["status"] == "running" and (r["host"] != socket.gethostname() or not is_training(r["path"])):
            # Another host's run cannot be checked from here; ours is dead if its lock is free.
            r["status"] = "crashed" if r["host"] == socket.gethostname() else "running?"
    return [r for r in rows if (not status or r["status"] == status) and (not preset or r["preset"] == preset)
            and (not dataset or r["dataset"] == dataset) and (not name or name in r["name"])]


def lookup(db: Path, keys: list[str]) -> list[dict]:
    """Runs by id, name or folder path, in the order asked; unknown keys are the caller's error."""
    every, found = runs(db), []
    for key in keys:
        matches = [r for r in every if key in (str(r["id"]), r["name"], r["path"])
                   or Path(key).resolve() == Path(r["path"])]
        if not matches:
            raise CnnlabError(f"no run {key!r} in {db} (see `cnnlab runs`)")
        found.append(matches[0])
    return found


def table(rows: list[dict]) -> str:
    """The `cnnlab runs` listing."""
    head = ["id", "name", "preset", "dataset", "status", "epochs", "best val acc", "test acc", "s/epoch", "started"]
    lines = [[str(r["id"]), r["name"], r["preset"] or "-", r["dataset"] or "-", r["status"],
              f"{r['epochs']}/{r['planned_epochs']}", number(r["best_val_accuracy"], ".4f", "-"),
              number(r["test_accuracy"], ".4f", "-"),
              number(r["seconds_per_epoch"], ".1f", "-"), time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started"]))]
             for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in [head, *lines])


def scan(db: Path, folder: Path) -> int:
    """Record every run folder under `folder` that the registry does not know yet (a copied or moved run, one
    trained into another registry), from what the folder says about itself. Returns how many were added."""
    known = {r["path"] for r in runs(db)}
    added = 0
    for marker in sorted(Path(folder).rglob("config.toml")):
        run_dir = marker.parent.resolve()
        if str(run_dir) in known:
            continue
        try:
            f = facts.gather(run_dir, evaluate=False)
        except CnnlabError:
            continue  # a config.toml that is not a run's
        s = f.summary
        epochs, best_accuracy, best_loss, seconds = epoch_columns(f.history)
        test = f.results.test if f.results else None
        status = "stopped early" if f.results and f.results.stopped_early else s.status
        with connect(db) as con:
            con.execute("""INSERT INTO runs (name, preset, dataset, status, started, ended, epochs, planned_epochs,
                    best_val_accuracy, best_val_loss, test_accuracy, test_loss, params, seconds_per_epoch, message,
                    config, path, host, pid, device) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,?)
                    ON CONFLICT(path) DO NOTHING""",
                        (run_dir.name, f.cfg.preset, s.data, status, marker.stat().st_mtime,
                         marker.stat().st_mtime if status != "running" else None, epochs, s.max_epochs,
                         best_accuracy, best_loss, *_scores(test),
                         s.params, seconds, f"found by cnnlab runs --scan {folder}",
                         json.dumps(config.to_dict(f.cfg)), str(run_dir), socket.gethostname(),
                         (f"{f.results.device} {f.results.precision}".strip() or None) if f.results else None))
        con.close()
        added += 1
    return added
