"""A run: one folder under runs/ holding its config, metrics, checkpoints, results and curves.

Running the same command again resumes from `last.pt` (weights, optimizer, epoch, learning rate, callback
state and history); the per-epoch randomness is derived from (seed, epoch), so the resumed epochs match an
uninterrupted run. A lock keeps a second process from training into the same folder.
"""

import shutil
import time
from pathlib import Path

import torch

from cnnlab.core import checkpoints, config, devices, validation
from cnnlab.core.errors import CnnlabError, one_line
from cnnlab.core.locks import lock
from cnnlab.data import datasets
from cnnlab.data.splits import prepare_data
from cnnlab.experiments import registry
from cnnlab.models import presets, results, specs
from cnnlab.reports import plots
from cnnlab.training import distributed, divergence
from cnnlab.training.callbacks import (
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    ProgressBar,
    ReduceLROnPlateau,
    TensorBoard,
)
from cnnlab.training.trainer import Trainer

OPTIMISTIC = "test set: optimistic, the model was selected on the data it is scored on"
# May differ on a resumed run: they do not change its numbers (a device may change its last bits, and a run
# trained on a GPU must resume on a CPU-only machine).
RESUMABLE_CHANGES = {"epochs", "autosave_seconds", "tensorboard", "device", "deterministic"}


def make_callbacks(cfg: config.Config, run_dir: Path):
    """Every rank runs the callbacks that steer training (the same metrics give the same decisions); only
    rank 0 the ones that write files (ModelCheckpoint's writes go through Trainer.save_model, rank 0's only)."""
    ck, es, rl, main = cfg.checkpoint, cfg.early_stopping, cfg.reduce_lr, distributed.is_main()
    callbacks = [ModelCheckpoint(ck.filepath, ck.monitor, ck.mode, ck.save_best_only)]
    if es.enabled:
        callbacks.append(EarlyStopping(es.monitor, es.min_delta, es.patience, es.mode, es.baseline,
                                       es.restore_best_weights, es.start_from_epoch))
    if rl.enabled:
        callbacks.append(ReduceLROnPlateau(rl.monitor, rl.factor, rl.patience, rl.min_delta, rl.cooldown,
                                           rl.min_lr, rl.mode))
    if main:
        callbacks.append(CSVLogger(run_dir / "metrics.csv"))
    if cfg.tensorboard and main:
        callbacks.append(TensorBoard(run_dir / "tensorboard"))
    if main:
        callbacks.append(ProgressBar())
    return callbacks


def _differences(saved: dict, wanted: dict, prefix=""):
    for k in sorted(set(saved) | set(wanted)):
        a, b = saved.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            yield from _differences(a, b, f"{prefix}{k}.")
        elif f"{prefix}{k}" == "data" and a and b and Path(a).resolve() == Path(b).resolve():
            continue  # the same data, named relative to where an older run started or absolutely
        elif a != b and f"{prefix}{k}" not in RESUMABLE_CHANGES:
            yield f"{prefix}{k}: {a!r} -> {b!r}"


def train_run(cfg: config.Config, run_dir: Path, data_dir: str | None = None, fresh: bool = False, say=print,
              registry_db: Path | None = None, extra_callbacks=()):
    """Train (or resume) the run in `run_dir`; it is recorded in `registry_db` (default: beside the run). A run
    that fails before it has written anything (bad data, a model that does not fit it) leaves no folder behind."""
    validation.validate(cfg)
    run_dir, new = Path(run_dir), not Path(run_dir).exists()
    device = devices.resolve(cfg.device)  # a device that is not here stops the run before anything is written
    distributed.init(device.type)
    held = lock(run_dir) if distributed.is_main() else None  # rank 0 speaks and writes for all
    try:
        return _train_run(cfg, run_dir, data_dir, fresh, say if held else _silent, registry_db, extra_callbacks, held)
    except BaseException:
        if new and run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".lock"}:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if held:  # released however the run ends, so the same process may train here again
            held.close()


def pictures_found(ds) -> str:
    """One line on what a picture folder held: its layout, the class counts, what was ignored and skipped."""
    counts = torch.bincount(torch.cat([s.y for s in (ds.train, ds.val, ds.test) if s is not None]),
                            minlength=len(ds.classes)).tolist()
    per_class = ", ".join(f"{c} {n:,}" for c, n in zip(ds.classes, counts)) if len(counts) <= 12 else \
        f"{min(counts):,} to {max(counts):,} per class"
    line = f"pictures: {sum(counts):,} in {len(ds.classes)} classes ({per_class}), {ds.layout}"
    if ds.ignored:
        line += f"; {ds.ignored:,} hidden or non-picture file(s) ignored"
    if ds.skipped:
        line += f"; {len(ds.skipped):,} unreadable picture(s) skipped, listed in skipped.txt (strict = true refuses them)"
    return line


def _train_run(cfg, run_dir, data_dir, fresh, say, registry_db, extra_callbacks, held):
    # What the folder holds: a resume point to continue (or a finished run to report), checked against cfg.
    state, record, lower_lr = _saved(cfg, run_dir, fresh, held, say)
    done = results.read(run_dir) if state and _finished(state) and cfg.epochs <= state["config"]["epochs"] else None
    if done:
        scored = f"test accuracy {done.test.accuracy:.4f}" if done.test else "no test set"
        say(f"{run_dir.name} already finished at epoch {state['epoch']}: {scored} (results.json); use "
            f"--epochs N to extend or --fresh")
        return done
    # The data, the model and the trainer with its callbacks.
    threads = devices.set_threads(cfg.threads, distributed.world_size())
    device = distributed.device(devices.resolve(cfg.device))
    ds, train, val = prepare_data(cfg, data_dir)
    _say_data(cfg, ds, train, val, device, threads, say)
    torch.manual_seed(cfg.seed)
    model, _ = presets.build_model(cfg, ds.input_shape, len(ds.classes))
    specs.fit_whitening(model, train.x)  # a no-op without a whiten layer; a resume then loads the saved one
    recorder = registry.Recorder(registry_db or run_dir.parent / registry.FILENAME, run_dir, say,
                                 enabled=distributed.is_main())
    callbacks = make_callbacks(cfg, run_dir) + [registry.RecordEpochs(recorder), *extra_callbacks]
    trainer = Trainer(model, cfg, train, val, callbacks, run_dir, _about(cfg, ds, train))
    # The folder: emptied for a fresh start only now, with the config, data and model known to be good.
    if fresh and held:
        for p in run_dir.iterdir():
            if p.name != ".lock":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        recorder.fresh()
    elif state:
        resume(trainer, state, cfg, run_dir, say)
    if lower_lr and state:
        trainer.lr = cfg.optimizer.lr
        say(f"resuming with optimizer.lr {cfg.optimizer.lr:g} (it diverged at epoch {record['epoch']}, step "
            f"{record['step']} with {record['config']['optimizer']['lr']:g})")
    if record is not None and held:
        divergence.clear(run_dir)
    if held:
        checkpoints.atomic_write(run_dir / "config.toml", config.to_toml(cfg).encode())
        if ds.skipped:
            text = "".join(f"{name}\t{why}\n" for name, why in ds.skipped)
            checkpoints.atomic_write(run_dir / "skipped.txt", text.encode())
    # Training, recorded however it ends, then the results.
    recorder.start(cfg, ds.name, sum(p.numel() for p in model.parameters()),
                   f"{devices.describe(trainer.device)} {trainer.precision}")
    started = time.perf_counter()
    try:
        trainer.fit()
    except KeyboardInterrupt:
        recorder.end("interrupted", message=f"after {trainer.saved_epoch} whole epoch(s)")
        say(f"interrupted; {trainer.saved_epoch} whole epoch(s) and any later resume point are saved in {run_dir}: "
            f"run the same command to resume")
        raise
    except Exception as e:  # e.g. the loss became NaN: recorded, then reported as usual
        recorder.end("failed", message=one_line(e))
        raise
    result = finish(trainer, ds, cfg, run_dir, threads, time.perf_counter() - started)
    recorder.end("stopped early" if result.stopped_early else "finished", result.test)
    say(f"test accuracy: {result.test.accuracy:.4f} (loss {result.test.loss:.4f}, {result.weights}) - run folder "
        f"{run_dir}" if result.test else f"no test set; run folder {run_dir}")
    return result


def _saved(cfg, run_dir: Path, fresh: bool, held, say) -> tuple:
    """(last.pt's state, the divergence record, whether this is a re-run with a lower learning rate after a
    divergence): None, None, False for a fresh start. Settings that differ from the saved run's are refused."""
    state = None
    if not fresh:
        for stale in run_dir.glob(".*.tmp") if held else []:  # left by a process killed mid-write
            stale.unlink()
        state, warning = checkpoints.load_latest(run_dir / "last.pt")
        if warning:
            say(f"warning: {warning}")
    record = None if fresh else divergence.read(run_dir, state)
    lower_lr = False
    if state or record:
        # Through from_dict, so keys added to Config since the run was saved compare as their defaults.
        saved = state["config"] if state else record["config"]
        diff = list(_differences(config.to_dict(config.from_dict(saved)), config.to_dict(cfg)))
        lower_lr = record is not None and divergence.check_rerun(run_dir, record, state, diff, cfg.optimizer.lr)
        if state and diff and not lower_lr:
            raise CnnlabError(f"{run_dir} was trained with other settings ({'; '.join(diff[:3])}); "
                              f"re-run with --fresh to start over or --name for a new run")
    return state, record, lower_lr


def _say_data(cfg, ds, train, val, device, threads: int, say):
    """What the run trains on, and where and how it computes."""
    sampled = cfg.train_subset and cfg.validate_on == "val" and val
    say(f"data: {ds.name} from {ds.source}{'' if ds.verified else ' (not digest-checked: user data)'}; "
        f"{len(train)} train / {len(val) if val is not None else 0} validation"
        f"{' (sampled in proportion to train_subset)' if sampled else ''}"
        f" / {len(ds.test)} test images; "
        f"training on {devices.describe(device)} in {autocast_text(device, cfg.precision)}"
        f"{f' on {threads} thread(s)' if device.type == 'cpu' else ''}")
    if ds.cached_to:
        mb = datasets.folder_bytes(ds.cached_to) / 1e6
        say(f"decoded {ds.name} once and cached the arrays ({mb:.1f} MB) in {ds.cached_to}; `cnnlab cache` shows "
            f"the cache, `cnnlab cache --clear` frees it")
    if ds.layout:
        say(pictures_found(ds))
    if cfg.validate_on == "test":
        say(f"warning: validating on the {OPTIMISTIC}")


def _about(cfg, ds, train) -> dict:
    """What a checkpoint says about its data, for evaluate, report, predict and serve."""
    about = {"classes": ds.classes, "input_shape": list(ds.input_shape), "dataset": ds.name,
             # per class, for the report's table beside per-class accuracy (and class_weight's reasons)
             "train_counts": torch.bincount(train.y, minlength=len(ds.classes)).tolist()}
    if cfg.data:  # what lets evaluate and report find the data again if it moves
        about["data_digest"] = datasets.fingerprint(cfg.data)
        about["crop_to_aspect_ratio"] = cfg.crop_to_aspect_ratio  # predict and serve prepare pictures the same way
    return about


def autocast_text(device, wanted: str) -> str:
    chosen = devices.precision(device, wanted)
    return "fp32" if chosen == "fp32" else f"{chosen} autocast"


def _silent(*args, **kwargs):
    pass


def _finished(state: dict) -> bool:
    return state["stopped"] or state["epoch"] >= state["config"]["epochs"]


def resume(trainer: Trainer, state: dict, cfg: config.Config, run_dir: Path, say):
    try:
        trainer.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # e.g. the --data folder gained a class
        raise CnnlabError(f"{run_dir / 'last.pt'} does not fit this model and data ({type(e).__name__}: {e}); "
                          f"use --fresh to start over") from None
    if state.get("threads", torch.get_num_threads()) != torch.get_num_threads():
        say(f"warning: saved with {state['threads']} threads, resuming with {torch.get_num_threads()}: the result "
            f"will be equally good but not bit-identical to an uninterrupted run (set threads = {state['threads']})")
    if _finished(state) and cfg.epochs > state["config"]["epochs"]:
        # Extending a finished run is Keras' second model.fit(): it starts from the weights the first one
        # ended with (the best ones, if restored) and early stopping starts counting afresh.
        trainer.stop_training = False
        for cb in trainer.callbacks:
            if isinstance(cb, EarlyStopping):
                cb.on_train_end()
                cb.reset()
        trainer.restored_epoch = None
        say(f"extending {run_dir.name} from epoch {trainer.epoch} to {cfg.epochs}")
    elif _finished(state):
        say(f"{run_dir.name} finished at epoch {trainer.epoch}; writing its missing results")
    else:
        at_step = f", step {trainer.batch + 1}" if trainer.batch else ""
        say(f"resuming {run_dir.name} at epoch {trainer.epoch + 1}{at_step} (of {cfg.epochs})")


def finish(trainer: Trainer, ds, cfg, run_dir: Path, threads: int, seconds: float) -> results.RunResult:
    es = next((cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping)), None)
    stopped = es is not None and es.stopped_epoch >= 0
    result = results.RunResult(
        dataset=ds.name, source=ds.source, verified=ds.verified, classes=ds.classes, epochs_run=trainer.epoch,
        stopped_early=stopped, stopped_epoch=es.stopped_epoch + 1 if stopped else None,
        weights=(f"best epoch {trainer.restored_epoch + 1} restored" if trainer.restored_epoch is not None
                 else f"last epoch {trainer.epoch}"),
        validation=OPTIMISTIC if cfg.validate_on == "test" else f"{cfg.val_split:.0%} stratified hold-out",
        final=trainer.history[-1] if trainer.history else {},
        test=trainer.evaluate(ds.test) if len(ds.test) else None,  # every rank scores its share
        threads=threads, processes=distributed.world_size(), precision=trainer.precision,
        device=devices.describe(trainer.device), seconds_this_session=round(seconds, 2))
    if not distributed.is_main():
        return result
    results.write(run_dir, result)
    if trainer.history:
        best = trainer.restored_epoch + 1 if trainer.restored_epoch is not None else None
        plots.plot_curves(trainer.history, run_dir / "curves.png", f"{run_dir.name} on {ds.name}", best)
    return result


def run_folder(runs: str, name: str) -> Path:
    """Only a plain name: a fresh start empties this folder, so it must never be `..`, `/` or a path elsewhere."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise CnnlabError(f"run name {name!r} must be a plain folder name (no '/', not '.' or '..')")
    return Path(runs) / name
