"""A run whose loss became NaN or infinite: which resume point survives it, and what a re-run is told.

A diverged step never reaches the weights (Trainer.train_step), but the weights that produced it are bad
already. When the newest resume point holds them (it was saved just before that step), it gives way to the
save before it, so last.pt is always a point whose weights are finite and whose next step's loss was finite.
diverged.json records where and with which settings: resume is bit-exact, so running the same command again
would diverge at the same step, and it says so instead; a lower optimizer.lr resumes from the kept point.
"""

import json
from pathlib import Path

from cnnlab.core import checkpoints, config
from cnnlab.core.errors import CnnlabError

RECORD = "diverged.json"


def position(epoch: int, batch: int) -> str:
    """A resume point's place, as the progress bar counts (epoch and step from 1)."""
    return f"the end of epoch {epoch}" if batch == 0 else f"epoch {epoch + 1}, step {batch}"


def lower_lr(lr: float) -> str:
    return f"{lr / 10:g}"


def stop(trainer, what: str, at_step: int, weights_step: int):
    """Raise the run's one-line error for `what` (e.g. "loss became nan") seen at (global) step `at_step`, first
    discarding the resume point if it holds the weights after step `weights_step`, the ones that diverged."""
    last, lr = trainer.run_dir / "last.pt", trainer.cfg.optimizer.lr
    where = f"epoch {trainer.epoch + 1}, step {trainer.batch - (trainer.step - at_step)}"
    if trainer.rank != 0:
        raise CnnlabError(f"{what} at {where}")
    removed = trainer.saved_step == weights_step and last.exists() and not checkpoints.step_back(last)
    kept = checkpoints.load(last) if last.exists() else None
    record = {"what": what, "epoch": trainer.epoch + 1, "step": trainer.batch - (trainer.step - at_step),
              "global_step": at_step,
              "kept_step": kept["step"] if kept else None, "config": config.to_dict(trainer.cfg)}
    checkpoints.atomic_write(trainer.run_dir / RECORD, json.dumps(record, indent=2).encode())
    if kept:
        keeps = (f"last.pt keeps the last weights whose loss was finite, from {position(kept['epoch'], kept['batch'])}; "
                 f"resume from there with a lower rate: the same command with --set optimizer.lr={lower_lr(lr)}")
    else:
        keeps = ("no resume point had a finite loss yet" + (" (the one saved had diverged and is removed)" if removed
                                                             else "") +
                 f"; start again with a lower rate: --set optimizer.lr={lower_lr(lr)}")
    raise CnnlabError(f"{what} at {where} with optimizer.lr {lr:g}; {keeps}")


def read(run_dir: Path, state: dict | None) -> dict | None:
    """The record of a divergence that `state` (the resume point, None for none) would run into again."""
    path = Path(run_dir) / RECORD
    try:
        record = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    if record is None or (state["step"] if state else None) != record.get("kept_step"):
        return None  # trained past it since, or another resume point: stale
    return record


def check_rerun(run_dir: Path, record: dict, state: dict | None, differences: list, lr: float) -> bool:
    """Before a run resumes (or starts) where it diverged (`record`): refuse the same settings, which would
    diverge at the same step again; True when the only difference is a lower optimizer.lr, which may resume."""
    if not differences:
        lr = record["config"]["optimizer"]["lr"]
        start = f"resuming from {position(state['epoch'], state['batch'])}" if state else "starting again"
        raise CnnlabError(f"{Path(run_dir).name} diverged at epoch {record['epoch']}, step {record['step']} with these "
                          f"settings ({record['what']}); {start} would diverge there again (training is "
                          f"deterministic). Lower the rate: the same command with --set optimizer.lr={lower_lr(lr)}")
    return all(d.startswith("optimizer.lr:") for d in differences) and lr < record["config"]["optimizer"]["lr"]


def clear(run_dir: Path):
    (Path(run_dir) / RECORD).unlink(missing_ok=True)
