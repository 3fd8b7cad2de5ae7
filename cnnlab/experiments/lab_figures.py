"""The figures the lab's notebook printed (Keras on Colab, the genuine CIFAR-10) beside this run's: one table per
section, for `cnnlab lab`'s report and for examples/lab.ipynb.

The lab's figures are read off ../shared/lab/lab3-notebook.txt: section 3.2 printed every epoch's accuracies
(the text keeps epochs 1-4 whole) and its answer gave the last; 3.3 and 4.4 only their answers (4.4 with `%3.2f`,
so ours is compared at that precision too); section 5 printed val_loss at each epoch where it improved, and the
text ends at epoch 13, before early stopping ended it.
"""

from cnnlab.reports.facts import RunFacts
from cnnlab.reports.report import number

LAB_3_2_EPOCHS = [(0.3099, 0.3574), (0.3730, 0.3840), (0.3976, 0.3816), (0.4130, 0.4146)]  # (train, val)
LAB_5_VAL_LOSS = [1.30976, 1.09879, 1.06799, 0.97033, 0.75287, None, 0.73661, 0.73308, 0.60953, None, None, 0.60577]
SECTIONS = {"3.2": "mlp", "3.3": "mlp-deep", "4.4": "mnist-cnn", "5": "cifar-cnn"}
HEADER = ["Section", "Figure", "The lab (Keras, Colab, the genuine data)", "cnnlab (this machine)", "cnnlab's data"]


def _series(values: list, digits=3) -> str:
    return ", ".join(number(v, f".{digits}f") for v in values)


def _final(r: RunFacts) -> tuple:
    last = r.history[-1] if r.history else {}
    return last.get("accuracy"), last.get("val_accuracy")


def _mlp(r: RunFacts) -> list:
    train, val = _final(r)
    early = r.history[:len(LAB_3_2_EPOCHS)]
    return [("training accuracy, epochs 1-4", _series([t for t, _ in LAB_3_2_EPOCHS]),
             _series([h["accuracy"] for h in early])),
            ("validation accuracy, epochs 1-4", _series([v for _, v in LAB_3_2_EPOCHS]),
             _series([h["val_accuracy"] for h in early])),
            (f"final training / validation accuracy (epoch {len(r.history)})", "0.596 / 0.51",
             f"{number(train, '.3f')} / {number(val, '.3f')}"),
            ("fit", "underfitting (\"the training accuracy is low\")", r.verdict.label)]


def _mlp_deep(r: RunFacts) -> list:
    train, val = _final(r)
    best_acc = max(r.history, key=lambda h: h["val_accuracy"]) if r.history else {}
    ev = r.verdict.evidence
    return [(f"final training / validation accuracy (epoch {len(r.history)})", "about 0.94 / about 0.49",
             f"{number(train, '.3f')} / {number(val, '.3f')}"),
            ("overfitting from", "about epoch 70 (validation accuracy declining)",
             f"validation accuracy highest at epoch {best_acc.get('epoch', '—')} "
             f"({number(best_acc.get('val_accuracy'), '.3f')}), "
             f"validation loss lowest at epoch {ev.get('best_val_loss_epoch', '—')}; verdict: {r.verdict.label}")]


def _mnist_cnn(r: RunFacts) -> list:
    test = r.results.test if r.results else None
    acc, loss = (test.accuracy, test.loss) if test else (None, None)
    n = len(r.history)
    return [(f"test accuracy, loss (`%3.2f`) after {n} epoch{'s' * (n != 1)}", "0.99, 0.03",
             f"{number(acc, '.2f')}, {number(loss, '.2f')} ({number(acc, '.4f')}, {number(loss, '.4f')})")]


def _cifar_cnn(r: RunFacts) -> list:
    losses, best = [h["val_loss"] for h in r.history], float("inf")
    improved = []  # as Keras' ModelCheckpoint(verbose=1) printed them: only where val_loss improved
    for v in losses[:len(LAB_5_VAL_LOSS)]:
        improved.append(v if v < best else None)
        best = min(best, v)
    test = r.results.test if r.results else None
    return [("val_loss at epochs 1-12 where it improved", _series(LAB_5_VAL_LOSS), _series(improved)),
            ("val_loss at epochs 1-12, every epoch", "(not printed)", _series(losses[:len(LAB_5_VAL_LOSS)])),
            ("where early stopping ended", "not in the text (it ends at epoch 13)", r.stopped),
            ("test accuracy", "not in the text", number(test.accuracy if test else None, '.4f'))]


ROWS = {"3.2": _mlp, "3.3": _mlp_deep, "4.4": _mnist_cnn, "5": _cifar_cnn}


def side_by_side(runs: dict, sections=None) -> list:
    """Rows (section, figure, the lab's, ours, our data) for the given sections (default: every section whose run
    is in `runs`, a {preset name: RunFacts} dict)."""
    chosen = sections or [s for s, name in SECTIONS.items() if name in runs]
    rows = []
    for section in chosen:
        r = runs[SECTIONS[section]]
        rows += [(f"{section} {SECTIONS[section]}", *row, r.summary.data) for row in ROWS[section](r)]
    return rows
