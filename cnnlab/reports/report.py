"""`cnnlab report RUN...`: report.md and a self-contained report.html answering the lab's questions per run.

Per run: the hyperparameters as the lab tabulates them, final and best accuracy and loss, why training
stopped, the fit verdict (cnnlab.reports.verdict) with its evidence, the learning curves, and what the model gets
wrong on the test set (confusion matrix, per-class accuracy, most confused pairs, misclassified images).
Across runs: one comparison table and overlaid validation curves. A run without results.json (crashed,
interrupted, still training) is reported as such from its metrics.csv and checkpoints, never skipped. The
facts come from cnnlab.reports.facts; this module lays them out.
"""

from pathlib import Path

from cnnlab.core import checkpoints
from cnnlab.reports import plots
from cnnlab.reports.facts import RunFacts, gather
from cnnlab.reports.html import to_html

PAIRS_SHOWN = 5


def number(v, spec: str, missing: str = "—") -> str:
    """`v` formatted by `spec` (".4f", ".2%", ","), or `missing` where there is no value: every table's one rule
    (plain-text tables on a terminal pass "-")."""
    return missing if v is None else format(v, spec)


def table(header: list, rows: list) -> str:
    def cells(r):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |"
    return "\n".join([cells(header), "|" + "---|" * len(header), *map(cells, rows)])


def comparison_html(summaries: list) -> str:
    """The comparison table as HTML, for a notebook cell."""
    return to_html(comparison_table(summaries), Path("."), "", fragment=True)


def comparison_table(summaries: list) -> str:
    rows = [(s.name, s.preset, s.data, s.status, f"{s.epochs}/{s.max_epochs}", number(s.params, ","),
             number(s.flops and s.flops / 1e6, ".2f"), number(s.sec_per_epoch, ".1f"),
             f"{number(s.best_val_accuracy, '.4f')} (epoch {s.best_val_epoch})" if s.best_val_epoch else "—",
             number(s.test_accuracy, ".4f") + ("" if s.test_from in (None, "results.json") else " *"),
             s.verdict) for s in summaries]
    note = ("\n\n\\* no results.json (the run did not finish): test accuracy of its checkpoint, scored for this report"
            if any(s.test_from not in (None, "results.json") for s in summaries) else "")
    return table(["Run", "Preset", "Data", "Status", "Epochs", "Parameters", "MFLOPs/image", "s/epoch",
                  "Best val accuracy", "Test accuracy", "Verdict"], rows) + note


def _metrics_rows(r: RunFacts) -> list:
    """Final and best epochs: train/validation from metrics.csv, test from results.json or our own scoring."""
    h, test, res = r.history, r.test, r.results
    def row(e):
        return [f"{e.get(k):.4f}" if k in e else "—" for k in ("accuracy", "loss", "val_accuracy", "val_loss")]

    def t(accuracy, loss):
        return [f"{accuracy:.4f}", f"{loss:.4f}"]
    if r.summary.status == "finished" and res.test:
        final_test = t(res.test.accuracy, res.test.loss) + [res.weights + " (results.json)"]
    elif test and test.checkpoint.startswith("last.pt"):
        final_test = t(test.accuracy, test.loss) + ["last.pt, scored for this report"]
    else:
        final_test = ["—", "—", "no results.json"]
    rows = [["final", h[-1]["epoch"], *row(h[-1]), *final_test]] if h else []
    if test and not test.checkpoint.startswith("last.pt") and 0 < test.epoch <= len(h):
        rows.append(["best (checkpoint)", test.epoch, *row(h[test.epoch - 1]), *t(test.accuracy, test.loss),
                     f"{test.checkpoint}, scored for this report"])
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


def run_section(r: RunFacts, img_dir: Path) -> str:
    s, slug, classes = r.summary, r.slug, r.classes
    label, rule, ev = r.verdict.label, r.verdict.rule, r.verdict.evidence
    out = [f"## {s.name} — {s.status}",
           f"**{s.preset}** on {s.data}, in `{r.dir}`. **Epochs run:** {s.epochs} of {s.max_epochs}; "
           f"**why it stopped:** {r.stopped}. " + (f"**Seconds per epoch:** {s.sec_per_epoch:.1f} (median)."
                                                     if s.sec_per_epoch else "")]
    out += [f"Note: {n}" for n in r.notes]
    out += ["### Hyperparameters", table(["Hyperparameter", "What I used"], r.hyperparameters),
            "### Accuracy and loss",
            table(["", "Epoch", "Train accuracy", "Train loss", "Val accuracy", "Val loss", "Test accuracy",
                   "Test loss", "Test weights"], _metrics_rows(r))]
    if s.best_val_epoch:
        out.append(f"Best validation accuracy: {s.best_val_accuracy:.4f} at epoch {s.best_val_epoch}.")
    out += [f"### Fit verdict: {label}", *(["\n".join(_evidence(label, ev))] if ev else []), f"Rule: {rule}"]
    if r.history:
        plots.plot_curves(r.history, img_dir / f"{slug}-curves.png", f"{s.name} on {s.data}",
                          ev.get("best_val_loss_epoch"))
        out += ["### Learning curves", f"![learning curves](report_images/{slug}-curves.png)"]
        out += ["The dashed line marks the epoch of lowest validation loss."] if ev else []
    test = r.test
    if not test:
        return "\n\n".join(out)
    cm, k = test.confusion, len(classes)
    plots.plot_confusion(cm, classes, img_dir / f"{slug}-confusion.png")
    out += [f"### Test set: {test.checkpoint} (epoch {test.epoch})",
            f"Test accuracy {test.accuracy:.4f}, loss {test.loss:.4f}." + (f" {test.note}." if test.note else ""),
            "#### Confusion matrix", f"![confusion matrix](report_images/{slug}-confusion.png)"]
    if k <= 20:
        out.append(table(["true \\ predicted", *classes], [[c, *row] for c, row in zip(classes, cm)]))
    def worst(i):
        return max((j for j in range(k) if j != i), key=lambda j: cm[i][j])
    trained = r.train_counts if len(r.train_counts) == k else None  # a class seen rarely is often missed
    out += ["#### Per-class accuracy", table(
        ["Class", *(["Training images"] if trained else []), "Test images", "Accuracy", "Most often mistaken for"], [
            [c, *([trained[i]] if trained else []), sum(cm[i]), f"{cm[i][i] / max(sum(cm[i]), 1):.4f}",
             classes[worst(i)] if sum(cm[i]) > cm[i][i] else "—"] for i, c in enumerate(classes)])]
    pairs = sorted(((cm[i][j], i, j) for i in range(k) for j in range(k) if i != j and cm[i][j]), reverse=True)
    out += ["#### Most confused pairs", table(["True", "Predicted as", "Images", "Share of the true class"], [
        [classes[i], classes[j], n, f"{n / sum(cm[i]):.1%}"] for n, i, j in pairs[:PAIRS_SHOWN]]) if pairs else
        "No test image is misclassified."]
    if test.errors:
        plots.plot_errors(test.errors, classes, img_dir / f"{slug}-errors.png")
        out += ["#### Misclassified test images", f"The {len(test.errors)} most confident mistakes, true → predicted:",
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
        slug = info.dir.name
        while slug in seen:  # two folders of the same name from different runs/ roots
            slug += "_"
        seen.add(slug)
        info.slug = slug
        runs.append(info)
    parts = [f"# {title or 'cnnlab report: ' + ', '.join(r.summary.name for r in runs)}"]
    parts += [intro_md.strip()] if intro_md.strip() else []
    if len(runs) > 1:
        plots.plot_overlay(runs, img_dir / "comparison-curves.png")
        parts += ["## Comparison", comparison_table([r.summary for r in runs]),
                  "![validation curves of every run](report_images/comparison-curves.png)"]
    parts += [run_section(r, img_dir) for r in runs]
    md = "\n\n".join(parts) + "\n"
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    checkpoints.atomic_write(md_path, md.encode())
    checkpoints.atomic_write(html_path, to_html(md, out_dir, parts[0][2:]).encode())
    return md_path, html_path
