"""What a run folder says about itself, for reports, `cnnlab compare` and the lab: its config, history and status
(finished, running or crashed, and why it stopped), its hyperparameters as the lab tabulates them, its size,
its fit verdict, and, on request, its best weights scored on the test set. A damaged checkpoint, results.json or
test-set analysis becomes a note, a damaged metrics.csv gives way to the checkpoint's copy of the history, and a
crashed run is reported, not skipped; only a folder with no readable config at all is an error.
"""

import csv
import io
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.core import checkpoints, config, paths
from cnnlab.core.errors import CnnlabError
from cnnlab.core.locks import is_training
from cnnlab.models import inference, specs
from cnnlab.models.results import RunResult
from cnnlab.models.results import read as read_results
from cnnlab.reports import verdict

NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
         "cifar10-jpeg": "CIFAR-10 (JPEG copy)"}  # the JPEG copy is not the benchmark: never call it CIFAR-10
ERRORS_SHOWN = 24  # misclassified images in the grid: enough to see a pattern, small enough to read


@dataclass
class RunSummary:
    """One line about a run: `cnnlab compare`'s row, the registry's view, a Run's repr."""
    name: str
    preset: str
    data: str
    status: str  # finished | running | crashed
    epochs: int
    max_epochs: int
    params: int | None
    flops: int | None  # per image, forward
    sec_per_epoch: float | None  # median: one slow epoch is not typical
    best_val_accuracy: float | None
    best_val_epoch: int | None
    test_accuracy: float | None
    test_from: str | None  # results.json, or the checkpoint scored for a report
    verdict: str


@dataclass
class TestAnalysis:
    """A checkpoint scored on the run's test set, with its most confident mistakes (image, true, predicted, p)."""
    checkpoint: str
    epoch: int
    note: str
    classes: list
    loss: float
    accuracy: float
    confusion: list
    errors: list


@dataclass
class Verdict:
    label: str  # overfitting | underfitting | good fit | no verdict
    rule: str
    evidence: dict


@dataclass
class RunFacts:
    """Everything a report says about one run."""
    dir: Path
    cfg: object
    history: list  # metrics.csv rows
    results: RunResult | None  # results.json
    test: TestAnalysis | None
    notes: list
    classes: list
    stopped: str  # why training stopped
    verdict: Verdict
    summary: RunSummary
    hyperparameters: list
    train_counts: list = field(default_factory=list)  # training images per class, as the run recorded them
    slug: str = field(default="")  # the report's name for its figures


def read_history(run_dir: Path, state: dict | None) -> list:
    """metrics.csv rows as floats (the epoch as int); last.pt's copy if the CSV is missing or unreadable."""
    try:
        rows = csv.DictReader(io.StringIO(paths.read_text(run_dir / "metrics.csv", "metrics"), newline=""))
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v not in ("", None)}
                for row in rows]
    except (OSError, ValueError):  # CnnlabError (not a regular file) among them: the checkpoint keeps a copy
        return [{"epoch": i + 1, **h} for i, h in enumerate((state or {}).get("history", []))]


def status(run_dir: Path, state: dict | None, results: RunResult | None, history: list, cfg) -> tuple:
    """(status, why training stopped): finished, running or crashed (no results for the epochs it ran)."""
    if results and results.epochs_run >= len(history):
        if results.stopped_early:
            es = cfg.early_stopping
            return "finished", (f"early stopping at epoch {results.stopped_epoch}: {es.monitor} did not improve "
                                f"by more than {es.min_delta:g} for {es.patience} epochs")
        n = results.epochs_run
        return "finished", f"ran all {n} epoch{'s' * (n != 1)} it was set to"
    done = len(history)
    if is_training(run_dir):
        return "running", f"still training: {done} of {cfg.epochs} epochs so far"
    mid = f", part of epoch {done + 1} ({state['batch']} steps) kept as a resume point" if state and state.get(
        "batch") else ""
    return "crashed", (f"crashed or interrupted after {done} of {cfg.epochs} epochs{mid}; no results.json. "
                       f"Run the same train command to resume")


def _load(run_dir: Path) -> tuple:
    """(config, last.pt state or None, results or None, notes) of a run folder; damaged files become notes."""
    notes, state, results = [], None, None
    try:
        state, warning = checkpoints.load_latest(run_dir / "last.pt")
        notes += [warning] if warning else []
    except CnnlabError as e:
        notes.append(str(e))
    try:
        results = read_results(run_dir)
    except (OSError, ValueError) as e:
        notes.append(f"results.json unreadable ({e})")
    try:
        d = config.load_toml(run_dir / "config.toml") if (run_dir / "config.toml").exists() else state["config"]
        cfg = config.from_dict(d)
    except (CnnlabError, KeyError, TypeError) as e:
        raise CnnlabError(f"{run_dir} is not a readable run folder (no usable config.toml or last.pt: {e})") from None
    return cfg, state, results, notes


def data_name(cfg) -> str:
    stem = Path(cfg.data.rstrip("/")).name.split(".")[0] if cfg.data else cfg.dataset
    return NAMES.get(stem, stem)


def describe_layers(layers: list, classes: int) -> str:
    def one(layer):
        t = layer["type"]
        if t == "conv2d":
            k = layer["kernel"]
            return f"conv {layer['filters']} {k}x{k} {layer.get('padding', 'valid')} {layer.get('activation') or ''}".strip()
        if t == "dense":
            return f"dense {classes if layer['units'] == 'classes' else layer['units']} {layer.get('activation') or ''}".strip()
        if t in ("maxpool", "avgpool"):
            return f"{t} {layer.get('size', 2)}"
        return {"dropout": f"dropout {layer.get('rate', 0.5)}", "activation": layer.get("name", "")}.get(t, t)
    return " → ".join(one(layer) for layer in layers)


def hyperparameters(cfg, classes: int, params, flops) -> list:
    """(Hyperparameter, What I used) rows, in the order the lab's tables list them."""
    o, es, rl, ck = cfg.optimizer, cfg.early_stopping, cfg.reduce_lr, cfg.checkpoint
    opt = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}[o.name]
    opt += f", momentum {o.momentum:g}" if o.name in ("sgd", "rmsprop") and o.momentum else ""
    opt += " (Nesterov)" if o.nesterov else ""
    rows = [("Network", f"{cfg.preset or 'custom'}: {describe_layers(cfg.layers, classes)}"),
            ("Parameters", f"{params:,}" if params is not None else "?"),
            ("FLOPs per image", f"{flops / 1e6:.2f} M" if flops is not None else "?"),
            ("Weight initialisation", cfg.init),
            ("Data set", data_name(cfg) + (f", {cfg.train_subset} training images" if cfg.train_subset else "")),
            ("Validation", "the test set (optimistic)" if cfg.validate_on == "test"
             else f"{cfg.val_split:.0%} stratified hold-out of the training set" if cfg.val_split else "none"),
            ("Epochs", str(cfg.epochs)), ("Batch size", str(cfg.batch_size)), ("Optimizer", opt),
            ("Learning rate", f"{o.lr:g}" + (f", decay {o.decay:g} per step" if o.decay else "")
             + (f", one-cycle: {cfg.warmup_epochs:g} epochs of warm-up, then linear to 0"
                if cfg.lr_schedule == "onecycle" else ""))]
    rows += [("Weight decay", f"{o.weight_decay:g}")] if o.weight_decay else []
    rows += [("Weight averaging", f"moving average, momentum {o.ema_momentum:g} per step (the model is the "
              f"average)")] if o.use_ema else []
    rows += [("Label smoothing", f"{cfg.label_smoothing:g}")] if cfg.label_smoothing else []
    a = cfg.augment
    if a.flip or a.translate or a.blur:
        rows.append(("Augmentation", ", ".join(["left-right flips"] * a.flip + [f"shifts up to {a.translate} px"]
                                               * bool(a.translate) + [f"Gaussian blur up to {a.blur:g} px"]
                                               * bool(a.blur))))
    rows += [("Precision", cfg.precision)] if cfg.precision != "auto" else []
    rows.append(("Early stopping", f"on {es.monitor}, patience {es.patience}, min_delta {es.min_delta:g}"
                 + (", best weights restored" if es.restore_best_weights else "") if es.enabled else "off"))
    rows.append(("Reduce LR on plateau", f"on {rl.monitor}, factor {rl.factor:g}, patience {rl.patience}"
                 if rl.enabled else "off"))
    rows.append(("Checkpoint", f"{ck.filepath}, best {ck.monitor}" if ck.save_best_only else f"{ck.filepath}, every epoch"))
    rows.append(("Seed", str(cfg.seed)))
    return rows


def score_test_set(run_dir: Path, data_dir: str | None) -> TestAnalysis:
    """Score the best weights (ModelCheckpoint's newest file, else last.pt) on the run's own test set, once."""
    scored, ds = inference.evaluate_run(run_dir, "best", data_dir, keep_probabilities=True)
    conf, pred = scored.probabilities.max(1)
    wrong = (pred != ds.test.y).nonzero().flatten()
    wrong = wrong[conf[wrong].argsort(descending=True)][:ERRORS_SHOWN]  # the most confident mistakes teach most
    return TestAnalysis(Path(scored.checkpoint).name, scored.epoch, scored.note, ds.classes, scored.loss,
                        scored.accuracy, scored.confusion,
                        [(ds.test.x[i], int(ds.test.y[i]), int(pred[i]), float(conf[i])) for i in wrong.tolist()])


def check_run_folder(run_dir) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not {"last.pt", "last.pt.prev", "metrics.csv", "config.toml"} & {
            p.name for p in run_dir.iterdir()}:
        raise CnnlabError(f"{run_dir} is not a run folder (no config.toml, metrics.csv or last.pt)")
    return run_dir


def gather(run_dir, data_dir: str | None = None, evaluate: bool = True) -> RunFacts:
    """Everything the report shows about one run; `evaluate` scores the test set (seconds to a minute)."""
    run_dir = check_run_folder(run_dir)
    cfg, state, results, notes = _load(run_dir)
    history = read_history(run_dir, state)
    about = (state or {}).get("about", {})
    test = None
    if evaluate:
        try:
            test = score_test_set(run_dir, data_dir)
        except (CnnlabError, OSError) as e:
            notes.append(f"test-set analysis unavailable: {e}")
    classes = about.get("classes") or (results.classes if results else None) or (test.classes if test else [])
    params = flops = None
    if classes and about.get("input_shape"):
        _, infos = specs.build(cfg.layers, tuple(about["input_shape"]), len(classes), cfg.init)
        params, flops = sum(i.params + i.buffers for i in infos), sum(i.flops for i in infos)
    run_status, stopped = status(run_dir, state, results, history, cfg)
    label, rule, evidence = verdict.verdict(history, max(len(classes), 2)) if classes else (
        "no verdict", "The class count is unknown (no readable checkpoint).", {})
    seconds = [h["seconds"] for h in history if "seconds" in h]
    best_val = max(history, key=lambda h: h.get("val_accuracy", -1)) if history else {}
    final_test = results.test if run_status == "finished" else None
    summary = RunSummary(
        run_dir.name, cfg.preset or "custom", data_name(cfg), run_status, len(history), cfg.epochs, params, flops,
        statistics.median(seconds) if seconds else None, best_val.get("val_accuracy"), best_val.get("epoch"),
        final_test.accuracy if final_test else (test.accuracy if test else None),
        "results.json" if final_test else (f"{test.checkpoint} epoch {test.epoch}" if test else None), label)
    return RunFacts(run_dir, cfg, history, results, test, notes, classes, stopped, Verdict(label, rule, evidence),
                    summary, hyperparameters(cfg, len(classes) or "classes", params, flops),
                    about.get("train_counts", []))


def run_summary(run_dir, data_dir: str | None = None) -> RunSummary:
    """One line about a run (name, preset, status, epochs, params, FLOPs, s/epoch, best val and test accuracy,
    verdict) without touching its test set: test accuracy comes from results.json, or is None."""
    return gather(run_dir, data_dir, evaluate=False).summary
