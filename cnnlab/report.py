"""`cnnlab report RUN...`: report.md and a self-contained report.html answering the lab's questions per run.

Per run: the hyperparameters as the lab tabulates them, final and best accuracy and loss, why training
stopped, the fit verdict (cnnlab.verdict) with its evidence, the learning curves, and what the model gets
wrong on the test set (confusion matrix, per-class accuracy, most confused pairs, misclassified images).
Across runs: one comparison table and overlaid validation curves. A run without results.json (crashed,
interrupted, still training) is reported as such from its metrics.csv and checkpoints, never skipped.
"""

import csv
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab import CnnlabError, checkpoints, config, models, plots, registry, verdict
from cnnlab.markdown_html import to_html

NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
         "cifar10-jpeg": "CIFAR-10 (JPEG copy)"}  # the JPEG copy is not the benchmark: never call it CIFAR-10
ERRORS_SHOWN = 24  # misclassified images in the grid: enough to see a pattern, small enough to read
PAIRS_SHOWN = 5


def read_history(run_dir: Path, state: dict | None) -> list:
    """metrics.csv rows as floats (the epoch as int); last.pt's copy if the CSV is missing or unreadable."""
    try:
        with open(run_dir / "metrics.csv", newline="") as f:
            return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v not in ("", None)}
                    for row in csv.DictReader(f)]
    except (OSError, ValueError):
        return [{"epoch": i + 1, **h} for i, h in enumerate((state or {}).get("history", []))]


def status(run_dir: Path, state: dict | None, results: dict | None, history: list, cfg) -> tuple:
    """(status, why training stopped): finished, running or crashed (no results for the epochs it ran)."""
    if results and results.get("epochs_run", 0) >= len(history):
        if results.get("stopped_early"):
            es = cfg.early_stopping
            return "finished", (f"early stopping at epoch {results['stopped_epoch']}: {es.monitor} did not improve "
                                f"by more than {es.min_delta:g} for {es.patience} epochs")
        n = results["epochs_run"]
        return "finished", f"ran all {n} epoch{'s' * (n != 1)} it was set to"
    done = len(history)
    if registry.is_training(run_dir):
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
        results = json.loads((run_dir / "results.json").read_text())
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        notes.append(f"results.json unreadable ({e})")
    try:
        d = config.load_toml(run_dir / "config.toml") if (run_dir / "config.toml").exists() else state["config"]
        cfg = config.from_dict({k: v for k, v in d.items() if k != "preset"})
        cfg.preset = d.get("preset", "")
    except (CnnlabError, KeyError, TypeError) as e:
        raise CnnlabError(f"{run_dir} is not a readable run folder (no usable config.toml or last.pt: {e})") from None
    return cfg, state, results, notes


def data_name(cfg) -> str:
    stem = Path(cfg.data.rstrip("/")).name.split(".")[0] if cfg.data else cfg.dataset
    return NAMES.get(stem, stem)


def describe_layers(layers: list, classes: int) -> str:
    def one(l):
        t = l["type"]
        if t == "conv2d":
            k = l["kernel"]
            return f"conv {l['filters']} {k}x{k} {l.get('padding', 'valid')} {l.get('activation') or ''}".strip()
        if t == "dense":
            return f"dense {classes if l['units'] == 'classes' else l['units']} {l.get('activation') or ''}".strip()
        if t in ("maxpool", "avgpool"):
            return f"{t} {l.get('size', 2)}"
        return {"dropout": f"dropout {l.get('rate', 0.5)}", "activation": l.get("name", "")}.get(t, t)
    return " → ".join(one(l) for l in layers)


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


def score_test_set(run_dir: Path, cfg, data_dir: str | None) -> dict:
    """Score the best weights (ModelCheckpoint's newest file, else last.pt) on the run's own test set, once."""
    from cnnlab.run import prepare_data, set_threads  # deferred: run imports the whole training stack
    from cnnlab.train import EVAL_BATCH, to_input
    state, path, note = checkpoints.load_run_model(run_dir, "best")
    set_threads(cfg)
    ds, _, _ = prepare_data(cfg, data_dir)
    model = models.from_state(state, ds.input_shape, len(ds.classes), path).eval()
    channels_last = cfg.channels_last and models.uses_conv(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    losses, probs = [], []
    with torch.inference_mode():
        for i in range(0, len(ds.test), EVAL_BATCH):
            logits = model(to_input(ds.test.x[i:i + EVAL_BATCH], channels_last))
            losses.append(F.cross_entropy(logits, ds.test.y[i:i + EVAL_BATCH], reduction="sum"))
            probs.append(logits.softmax(1))
    p = torch.cat(probs)
    conf, pred = p.max(1)
    y, k = ds.test.y, len(ds.classes)
    wrong = (pred != y).nonzero().flatten()
    wrong = wrong[conf[wrong].argsort(descending=True)][:ERRORS_SHOWN]  # the most confident mistakes teach most
    return {"checkpoint": path.name, "epoch": state["epoch"], "note": note, "classes": ds.classes,
            "loss": float(sum(losses)) / len(y), "accuracy": (pred == y).float().mean().item(),
            "confusion": torch.bincount(y * k + pred, minlength=k * k).reshape(k, k).tolist(),
            "errors": [(ds.test.x[i], int(y[i]), int(pred[i]), float(conf[i])) for i in wrong.tolist()]}


def gather(run_dir, data_dir: str | None = None, evaluate: bool = True) -> dict:
    """Everything the report shows about one run; `evaluate` scores the test set (seconds to a minute)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not {"last.pt", "last.pt.prev", "metrics.csv", "config.toml"} & {
            p.name for p in run_dir.iterdir()}:
        raise CnnlabError(f"{run_dir} is not a run folder (no config.toml, metrics.csv or last.pt)")
    cfg, state, results, notes = _load(run_dir)
    history = read_history(run_dir, state)
    about = (state or {}).get("about", {})
    test = None
    if evaluate:
        try:
            test = score_test_set(run_dir, cfg, data_dir)
        except (CnnlabError, OSError) as e:
            notes.append(f"test-set analysis unavailable: {e}")
    classes = about.get("classes") or (results or {}).get("classes") or (test or {}).get("classes") or []
    params = flops = None
    if classes and about.get("input_shape"):
        _, infos = models.build(cfg.layers, tuple(about["input_shape"]), len(classes), cfg.init)
        params, flops = sum(i.params + i.buffers for i in infos), sum(i.flops for i in infos)
    run_status, stopped = status(run_dir, state, results, history, cfg)
    label, rule, evidence = verdict.verdict(history, max(len(classes), 2)) if classes else (
        "no verdict", "The class count is unknown (no readable checkpoint).", {})
    seconds = [h["seconds"] for h in history if "seconds" in h]
    best_val = max(history, key=lambda h: h.get("val_accuracy", -1)) if history else {}
    final_test = results["test"] if run_status == "finished" else None
    summary = {
        "name": run_dir.name, "preset": cfg.preset or "custom", "data": data_name(cfg), "status": run_status,
        "epochs": len(history), "max_epochs": cfg.epochs, "params": params, "flops": flops,
        "sec_per_epoch": statistics.median(seconds) if seconds else None,  # median: one slow epoch is not typical
        "best_val_accuracy": best_val.get("val_accuracy"), "best_val_epoch": best_val.get("epoch"),
        "test_accuracy": final_test["accuracy"] if final_test else (test or {}).get("accuracy"),
        "test_from": "results.json" if final_test else (f"{test['checkpoint']} epoch {test['epoch']}" if test else None),
        "verdict": label,
    }
    return {"dir": run_dir, "cfg": cfg, "history": history, "results": results, "test": test, "notes": notes,
            "classes": classes, "stopped": stopped, "verdict": (label, rule, evidence), "summary": summary,
            "hyperparameters": hyperparameters(cfg, len(classes) or "classes", params, flops)}


def run_summary(run_dir, data_dir: str | None = None) -> dict:
    """One line about a run (name, preset, status, epochs, params, FLOPs, s/epoch, best val and test accuracy,
    verdict) without touching its test set: test accuracy comes from results.json, or is None."""
    return gather(run_dir, data_dir, evaluate=False)["summary"]


def _num(v, fmt):
    return "—" if v is None else format(v, fmt)


def table(header: list, rows: list) -> str:
    cells = lambda r: "| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |"
    return "\n".join([cells(header), "|" + "---|" * len(header), *map(cells, rows)])


def comparison_table(summaries: list) -> str:
    rows = [(s["name"], s["preset"], s["data"], s["status"], f"{s['epochs']}/{s['max_epochs']}", _num(s["params"], ","),
             _num(s["flops"] and s["flops"] / 1e6, ".2f"), _num(s["sec_per_epoch"], ".1f"),
             f"{_num(s['best_val_accuracy'], '.4f')} (epoch {s['best_val_epoch']})" if s["best_val_epoch"] else "—",
             _num(s["test_accuracy"], ".4f") + ("" if s["test_from"] in (None, "results.json") else " *"),
             s["verdict"]) for s in summaries]
    note = ("\n\n\\* no results.json (the run did not finish): test accuracy of its checkpoint, scored for this report"
            if any(s["test_from"] not in (None, "results.json") for s in summaries) else "")
    return table(["Run", "Preset", "Data", "Status", "Epochs", "Parameters", "MFLOPs/image", "s/epoch",
                  "Best val accuracy", "Test accuracy", "Verdict"], rows) + note


def _metrics_rows(r: dict) -> list:
    """Final and best epochs: train/validation from metrics.csv, test from results.json or our own scoring."""
    h, test, res = r["history"], r["test"], r["results"]
    row = lambda e: [f"{e.get(k):.4f}" if k in e else "—" for k in ("accuracy", "loss", "val_accuracy", "val_loss")]
    t = lambda m: [f"{m['accuracy']:.4f}", f"{m['loss']:.4f}"]
    if r["summary"]["status"] == "finished":
        final_test = t(res["test"]) + [res["weights"] + " (results.json)"]
    elif test and test["checkpoint"].startswith("last.pt"):
        final_test = t(test) + ["last.pt, scored for this report"]
    else:
        final_test = ["—", "—", "no results.json"]
    rows = [["final", h[-1]["epoch"], *row(h[-1]), *final_test]] if h else []
    if test and not test["checkpoint"].startswith("last.pt") and 0 < test["epoch"] <= len(h):
        rows.append(["best (checkpoint)", test["epoch"], *row(h[test["epoch"] - 1]), *t(test),
                     f"{test['checkpoint']}, scored for this report"])
    return rows


def _evidence(label: str, ev: dict) -> list:
    slope = ev["train_accuracy_slope"]
    return [f"- **{label}**: " + "; ".join(ev["reasons"]) + ".",
            f"- train/validation accuracy at the last epoch: {ev['train_accuracy']:.4f} / {ev['val_accuracy']:.4f} "
            f"(gap {ev['gap'] * 100:.1f} points)",
            f"- validation loss lowest at epoch {ev['best_val_loss_epoch']} ({ev['best_val_loss']:.4f}); last epoch "
            f"{ev['epochs']}: {ev['last_val_loss']:.4f}" + (f" (mean of the last epochs {ev['val_loss_rise']:+.0%} vs the "
                                                 f"lowest)" if ev["best_val_loss_epoch"] < ev["epochs"] else ""),
            "- training accuracy at the end: " + ("a single epoch, no trend" if slope is None else
                                                  f"{slope * 100:+.2f} points per epoch over the last epochs")]


def run_section(r: dict, img_dir: Path) -> str:
    s, slug, classes = r["summary"], r["slug"], r["classes"]
    label, rule, ev = r["verdict"]
    out = [f"## {s['name']} — {s['status']}",
           f"**{s['preset']}** on {s['data']}, in `{r['dir']}`. **Epochs run:** {s['epochs']} of {s['max_epochs']}; "
           f"**why it stopped:** {r['stopped']}. " + (f"**Seconds per epoch:** {s['sec_per_epoch']:.1f} (median)."
                                                     if s["sec_per_epoch"] else "")]
    out += [f"Note: {n}" for n in r["notes"]]
    out += ["### Hyperparameters", table(["Hyperparameter", "What I used"], r["hyperparameters"]),
            "### Accuracy and loss",
            table(["", "Epoch", "Train accuracy", "Train loss", "Val accuracy", "Val loss", "Test accuracy",
                   "Test loss", "Test weights"], _metrics_rows(r))]
    if s["best_val_epoch"]:
        out.append(f"Best validation accuracy: {s['best_val_accuracy']:.4f} at epoch {s['best_val_epoch']}.")
    out += [f"### Fit verdict: {label}", *(["\n".join(_evidence(label, ev))] if ev else []), f"Rule: {rule}"]
    if r["history"]:
        plots.plot_curves(r["history"], img_dir / f"{slug}-curves.png", f"{s['name']} on {s['data']}",
                          ev.get("best_val_loss_epoch"))
        out += ["### Learning curves", f"![learning curves](report_images/{slug}-curves.png)"]
        out += ["The dashed line marks the epoch of lowest validation loss."] if ev else []
    test = r["test"]
    if not test:
        return "\n\n".join(out)
    cm, k = test["confusion"], len(classes)
    plots.plot_confusion(cm, classes, img_dir / f"{slug}-confusion.png")
    out += [f"### Test set: {test['checkpoint']} (epoch {test['epoch']})",
            f"Test accuracy {test['accuracy']:.4f}, loss {test['loss']:.4f}." + (f" {test['note']}." if test["note"] else ""),
            "#### Confusion matrix", f"![confusion matrix](report_images/{slug}-confusion.png)"]
    if k <= 20:
        out.append(table(["true \\ predicted", *classes], [[c, *row] for c, row in zip(classes, cm)]))
    worst = lambda i: max((j for j in range(k) if j != i), key=lambda j: cm[i][j])
    out += ["#### Per-class accuracy", table(["Class", "Test images", "Accuracy", "Most often mistaken for"], [
        [c, sum(cm[i]), f"{cm[i][i] / max(sum(cm[i]), 1):.4f}", classes[worst(i)] if sum(cm[i]) > cm[i][i] else "—"]
        for i, c in enumerate(classes)])]
    pairs = sorted(((cm[i][j], i, j) for i in range(k) for j in range(k) if i != j and cm[i][j]), reverse=True)
    out += ["#### Most confused pairs", table(["True", "Predicted as", "Images", "Share of the true class"], [
        [classes[i], classes[j], n, f"{n / sum(cm[i]):.1%}"] for n, i, j in pairs[:PAIRS_SHOWN]]) if pairs else
        "No test image is misclassified."]
    if test["errors"]:
        plots.plot_errors(test["errors"], classes, img_dir / f"{slug}-errors.png")
        out += ["#### Misclassified test images", f"The {len(test['errors'])} most confident mistakes, true → predicted:",
                f"![misclassified test images](report_images/{slug}-errors.png)"]
    return "\n\n".join(out)



def write_report(run_dirs: list, out_dir, title: str = "", intro_md: str = "", data_dir: str | None = None):
    """Write out_dir/report.md (figures in out_dir/report_images/) and out_dir/report.html (figures embedded).
    `intro_md` goes right after the title: `cnnlab lab` puts its answers there. Returns (md_path, html_path)."""
    out_dir = Path(out_dir)
    img_dir = out_dir / "report_images"
    img_dir.mkdir(parents=True, exist_ok=True)
    runs, seen = [], set()
    for d in run_dirs:
        info = gather(d, data_dir)
        slug = info["dir"].name
        while slug in seen:  # two folders of the same name from different runs/ roots
            slug += "_"
        seen.add(slug)
        info["slug"] = slug
        runs.append(info)
    parts = [f"# {title or 'cnnlab report: ' + ', '.join(r['summary']['name'] for r in runs)}"]
    parts += [intro_md.strip()] if intro_md.strip() else []
    if len(runs) > 1:
        plots.plot_overlay(runs, img_dir / "comparison-curves.png")
        parts += ["## Comparison", comparison_table([r["summary"] for r in runs]),
                  "![validation curves of every run](report_images/comparison-curves.png)"]
    parts += [run_section(r, img_dir) for r in runs]
    md = "\n\n".join(parts) + "\n"
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    checkpoints.atomic_write(md_path, md.encode())
    checkpoints.atomic_write(html_path, to_html(md, out_dir, parts[0][2:]).encode())
    return md_path, html_path
