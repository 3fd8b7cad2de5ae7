"""`cnnlab lab`: the university lab run whole — two MLPs on CIFAR-10, a CNN on MNIST, a CNN on CIFAR-10 — and one
report that answers the lab's questions with this run's numbers.

Re-running the same command resumes: finished runs are kept, an interrupted one continues where it stopped.
`--quick` trains on subsets for a few epochs (minutes on 2 cores): the same questions, smaller numbers.
"""

import time
from pathlib import Path

from cnnlab.core import checkpoints, config
from cnnlab.core.errors import CnnlabError
from cnnlab.data import sources
from cnnlab.experiments import lab_figures
from cnnlab.experiments.runs import train_run
from cnnlab.models import presets
from cnnlab.reports import facts, report
from cnnlab.reports.report import number

LAB = ["mlp", "mlp-deep", "mnist-cnn", "cifar-cnn"]  # the lab's order; the CIFAR ones need CIFAR-10
# --quick: enough images and epochs for curves with a shape (the MLPs start to overfit), about 4 minutes on
# 2 cores, so that examples/lab.ipynb's quick mode runs in CI within 5.
QUICK = {"mlp": {"epochs": 20, "train_subset": 10000},
         "mlp-deep": {"epochs": 20, "train_subset": 10000},
         "mnist-cnn": {"epochs": 3, "train_subset": 12000},
         "cifar-cnn": {"epochs": 6, "train_subset": 8000}}
QUICK_TEST_SUBSET = 2000
# What the lab's code does beyond its presets: sections 3 and 4 fit with validation_data=(test_x, test_y), so
# their validation figures (and mnist-cnn's early stopping) are the test set's, as the lab printed them.
AS_THE_LAB = {"mlp": {"validate_on": "test"}, "mlp-deep": {"validate_on": "test"},
              "mnist-cnn": {"validate_on": "test"}, "cifar-cnn": {}}


def cifar_data(cifar: str | None, data_dir: str | None) -> str:
    """'' to use the built-in CIFAR-10, else a path: --cifar, or the JPEG copy next to the other data sets."""
    if cifar:
        return cifar
    if sources.locate("cifar10", data_dir)[0]:
        return ""
    if sources.jpeg_copy(data_dir):
        return str(sources.jpeg_copy(data_dir))
    raise CnnlabError("the lab needs CIFAR-10: none found locally (see `cnnlab datasets`); pass --cifar PATH "
                      "(the python tarball, or a folder/archive of train/<class>/ and test/<class>/ images)")


def lab_settings(name: str, quick: bool = False) -> dict:
    """The settings the lab's code adds to a preset (AS_THE_LAB), and --quick's subsets: cnnlab.train's keywords."""
    if name not in LAB:
        raise CnnlabError(f"{name!r} is not one of the lab's networks: {', '.join(LAB)}")
    return AS_THE_LAB[name] | (QUICK[name] | {"test_subset": QUICK_TEST_SUBSET} if quick else {})


def lab_config(name: str, quick: bool, cifar: str, data_dir: str | None = None) -> config.Config:
    overrides = lab_settings(name, quick) | ({"data": cifar} if cifar and presets.preset(name).dataset == "cifar10"
                                              else {})
    return presets.resolve(name, overrides, data_dir)[0]


def run_lab(runs: Path, quick: bool = False, cifar: str | None = None, data_dir: str | None = None, say=print):
    """Train the four networks (or resume them), then write the lab report. Returns (md, html, seconds)."""
    out = Path(runs) / ("lab-quick" if quick else "lab")
    cifar = cifar_data(cifar, data_dir)
    configs = {name: lab_config(name, quick, cifar, data_dir) for name in LAB}  # all checked before anything trains
    started = time.perf_counter()
    for name, cfg in configs.items():
        say(f"== {name} on {cfg.data or cfg.dataset} ({cfg.epochs} epochs{', quick' if quick else ''})")
        train_run(cfg, out / name, data_dir, say=say, registry_db=Path(runs) / "registry.sqlite")
    seconds = time.perf_counter() - started
    runs_info = {name: facts.gather(out / name, data_dir, evaluate=False) for name in LAB}
    intro = answers(runs_info, quick, seconds)
    md, html = report.write_report([out / n for n in LAB], out, title="The lab, answered" + (" (quick)" if quick
                                   else ""), intro_md=intro, data_dir=data_dir)
    return md, html, seconds


def answers(info: dict, quick: bool, seconds: float) -> str:
    """The lab's questions, each answered with this run's measurements."""
    s = {n: info[n].summary for n in LAB}
    mlp, deep, mcnn, ccnn = (info[n] for n in LAB)
    shape = _input_shape(mlp)
    flat = shape[0] * shape[1] * shape[2]
    first = flat * 1024 + 1024
    lines = [
        f"Measured on this machine: **{sum(x['seconds'] for r in info.values() for x in r.history) / 60:.1f} "
        f"minutes** of training (every epoch of the four runs, validation included, summed from their "
        f"metrics.csv); this invocation of `cnnlab lab` took {seconds / 60:.1f} minutes up to this report"
        f"{' (quick mode: subsets of the training images, a few epochs; the full lab is `cnnlab lab`)' if quick else ''}.",
        "",
        "## The lab's printed figures beside this run's",
        "",
        report.table(lab_figures.HEADER, lab_figures.side_by_side(info)),
        "",
        "As in the lab's code, sections 3 and 4 validate on the test set (`validation_data=(test_x, test_y)`) and "
        "section 5 on 20% of the training images (Keras takes the last 20% of the arrays, cnnlab a stratified, "
        "seeded 20%). The lab printed accuracies unrounded in 3.2 and with `%3.2f` in 4.4; its CIFAR-10 is the "
        "genuine one, this run's the data named in the last column.",
        "",
        "## Why 3072 inputs?",
        f"A CIFAR-10 image is {shape[1]} x {shape[2]} pixels x {shape[0]} colour channels = **{flat}** numbers. A "
        f"dense network cannot take a grid, so the image is flattened into one vector of {flat} values (scaled "
        f"to [0, 1]). Its first Dense(1024) layer then has {flat} x 1024 weights + 1024 biases = **{first:,}** "
        f"parameters, {first / s['mlp'].params:.1%} of the MLP's {s['mlp'].params:,}. (MNIST: 28 x 28 x 1 "
        f"= 784.)",
        "",
        "## The designs",
        report.table(["Network", "Data", "Optimizer", "Learning rate", "Batch", "Epochs run / max", "Parameters",
                      "MFLOPs / image"],
                     [(n, s[n].data, info[n].cfg.optimizer.name, info[n].cfg.optimizer.lr,
                       info[n].cfg.batch_size, f"{s[n].epochs}/{s[n].max_epochs}", f"{s[n].params:,}",
                       f"{s[n].flops / 1e6:.2f}") for n in LAB]),
        "",
        "Each run's full hyperparameter table (Hyperparameter | What I used) is in its section below.",
        "",
        "## Are the MLPs over- or underfitting?",
    ]
    for name, r in (("mlp", mlp), ("mlp-deep", deep)):
        label, ev = r.verdict.label, r.verdict.evidence
        why = "; ".join(ev.get("reasons", [])) or "none of the over- or underfitting conditions holds"
        lines.append(f"- **{name}: {label}.** Last epoch: train accuracy {number(ev.get('train_accuracy'), '.2%')}, "
                     f"validation {number(ev.get('val_accuracy'), '.2%')} (gap {ev.get('gap', 0) * 100:.1f} points); "
                     f"validation loss lowest at epoch {ev.get('best_val_loss_epoch')} of {ev.get('epochs')}. "
                     f"Why: {why}.")
    lines += ["", f"The rule: {mlp.verdict.rule}", "",
              "## What did going deeper and wider, with Adam, change?",
              _deeper(s["mlp"], s["mlp-deep"], mlp.verdict.evidence, deep.verdict.evidence), "",
              "## Why does a CNN beat a dense network on images?",
              _cnn_vs_dense(s["mlp"], s["cifar-cnn"], mlp.verdict.label), "",
              "## The CNN on MNIST",
              f"mnist-cnn reached **{number(s['mnist-cnn'].test_accuracy, '.2%')}** test accuracy in "
              f"{s['mnist-cnn'].epochs} epoch(s) ({mcnn.stopped}), with {s['mnist-cnn'].params:,} "
              f"parameters, at {s['mnist-cnn'].sec_per_epoch:.1f} s per epoch. It was saved every epoch by "
              f"ModelCheckpoint and watched by EarlyStopping(min_delta={mcnn.cfg.early_stopping.min_delta}, "
              f"patience={mcnn.cfg.early_stopping.patience}); re-running the command resumes from last.pt.", "",
              f"cifar-cnn (early stopping on val_loss, patience {ccnn.cfg.early_stopping.patience}, best "
              f"weights restored): {ccnn.stopped}.", ""]
    return "\n".join(lines)


def _input_shape(r: dict) -> tuple:
    state = checkpoints.load(r.dir / "last.pt")
    return tuple(state["about"]["input_shape"])


def _deeper(a: dict, b: dict, ev_a: dict, ev_b: dict) -> str:
    return (f"mlp-deep has {b.params:,} parameters ({b.params / a.params:.2f}x mlp's) and takes "
            f"{b.sec_per_epoch:.1f} s per epoch (mlp: {a.sec_per_epoch:.1f} s). Best validation accuracy "
            f"{number(b.best_val_accuracy, '.2%')} vs {number(a.best_val_accuracy, '.2%')}; "
            f"test {number(b.test_accuracy, '.2%')} vs "
            f"{number(a.test_accuracy, '.2%')}. Train-validation gap at the end: {ev_b.get('gap', 0) * 100:.1f} vs "
            f"{ev_a.get('gap', 0) * 100:.1f} points. More capacity and Adam fit the training images faster; "
            f"whether that helps unseen images is what the validation column says.")


def _cnn_vs_dense(mlp: dict, cnn: dict, mlp_verdict: str) -> str:
    fewer = mlp.params / cnn.params
    gain = ((cnn.test_accuracy or 0) - (mlp.test_accuracy or 0)) * 100
    return (f"On the same CIFAR-10 images, cifar-cnn reaches **{number(cnn.test_accuracy, '.2%')}** test accuracy against "
            f"the MLP's **{number(mlp.test_accuracy, '.2%')}** ({gain:+.1f} points) with **{fewer:.1f}x fewer parameters** "
            f"({cnn.params:,} vs {mlp.params:,}), while doing {cnn.flops / mlp.flops:.0f}x the "
            f"arithmetic per image ({cnn.flops / 1e6:.0f} vs {mlp.flops / 1e6:.1f} MFLOPs) and taking "
            f"{cnn.sec_per_epoch:.1f} vs {mlp.sec_per_epoch:.1f} s per epoch. The numbers say why: a "
            f"convolution applies the same small 3x3 filters at every position (weight sharing), so each weight is "
            f"used hundreds of times per image — many FLOPs, few parameters — and a pattern learned in one place "
            f"is recognised everywhere; pooling makes the answer tolerant to small shifts. The MLP must learn each "
            f"pattern separately at every pixel position from 3072 unrelated inputs, which costs millions of "
            f"weights" + (", and it memorises its training images instead (its verdict above: overfitting)."
                          if mlp_verdict == "overfitting" else
                          f" (its verdict above: {mlp_verdict} after {mlp.epochs} epochs; the full lab's "
                          f"{presets.preset('mlp').epochs} epochs show "
                          f"whether it goes on to memorise its training images)."))
