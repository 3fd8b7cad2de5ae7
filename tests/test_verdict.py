"""The fit verdict, on synthetic curves (one rule at a time) and on three recorded real runs made to be clear cases.

tests/data/verdict-*.csv are the unedited metrics.csv files of three real runs (2 CPU cores, seed 0):
  mlp-cifar10-100-epochs      cnnlab train mlp --data ../shared/data/cifar10-jpeg.tar.gz --epochs 100
  mlp-cifar10-1-epoch-lr1e-5  cnnlab train mlp --data ../shared/data/cifar10-jpeg.tar.gz --epochs 1 --set optimizer.lr=1e-5
  mnist-cnn                   cnnlab train mnist-cnn
"""

import csv
import math
from pathlib import Path

import pytest

from cnnlab.reports.verdict import GAP_OVERFIT, verdict

DATA = Path(__file__).parent / "data"


def epochs(train_acc, val_acc, val_loss, train_loss=None):
    """A history from per-epoch lists; training loss defaults to a plausible value below ln(10)."""
    train_loss = train_loss or [max(0.05, 2.0 * (1 - a)) for a in train_acc]
    return [{"loss": tl, "accuracy": ta, "val_loss": vl, "val_accuracy": va}
            for ta, va, vl, tl in zip(train_acc, val_acc, val_loss, train_loss)]


def recorded(name):
    with open(DATA / f"verdict-{name}.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_large_gap_is_overfitting():
    label, rule, ev = verdict(epochs([0.6, 0.8, 0.95], [0.55, 0.6, 0.62], [1.2, 1.1, 1.1]))
    assert label == "overfitting" and ev["gap"] > GAP_OVERFIT and "10 points" in rule


def test_rising_validation_loss_is_overfitting_even_with_a_small_gap():
    # MNIST-like: accuracies close, but validation loss bottomed at epoch 3 and climbed 50% since
    label, _, ev = verdict(epochs([0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 1.0, 1.0],
                                  [0.97, 0.975, 0.98, 0.98, 0.98, 0.979, 0.98, 0.98],
                                  [0.10, 0.08, 0.07, 0.08, 0.09, 0.10, 0.105, 0.11]))
    assert label == "overfitting" and ev["best_val_loss_epoch"] == 3 and ev["val_loss_rise"] > 0.4


def test_one_noisy_last_epoch_is_not_overfitting():
    label, _, _ = verdict(epochs([0.9, 0.95, 0.97, 0.975, 0.98], [0.9, 0.94, 0.96, 0.965, 0.96],
                                 [0.30, 0.20, 0.15, 0.14, 0.17]))
    assert label == "good fit"


def test_low_training_accuracy_is_underfitting():
    label, _, ev = verdict(epochs([0.2], [0.21], [2.25], [2.28]))
    assert label == "underfitting" and ev["train_accuracy_slope"] is None
    assert any("only 20.0%" in r for r in ev["reasons"])


def test_still_climbing_with_validation_at_its_best_is_underfitting():
    label, _, ev = verdict(epochs([0.6, 0.66, 0.72, 0.78], [0.6, 0.65, 0.7, 0.74], [1.2, 1.0, 0.9, 0.8]))
    assert label == "underfitting" and ev["train_accuracy_slope"] == pytest.approx(0.06)
    assert any("more epochs would help" in r for r in ev["reasons"])


def test_plateau_with_small_gap_is_a_good_fit():
    label, _, ev = verdict(epochs([0.95, 0.98, 0.985, 0.988, 0.99], [0.97, 0.98, 0.984, 0.985, 0.986],
                                  [0.10, 0.06, 0.05, 0.048, 0.047]))
    assert label == "good fit" and ev["best_val_loss_epoch"] == 5


def test_chance_depends_on_the_class_count():
    h = epochs([0.52, 0.525, 0.53], [0.49, 0.5, 0.5], [0.69, 0.68, 0.68], [0.69, 0.68, 0.67])
    assert verdict(h, num_classes=2)[0] == "underfitting"  # 53% on two classes: barely above chance
    assert verdict(epochs([0.52, 0.525, 0.53], [0.49, 0.5, 0.5], [1.2, 1.1, 1.1], [1.2, 1.1, 1.1]),
                   num_classes=100)[0] == "good fit"  # 53% on a hundred classes is far above chance
    assert verdict(h, 2)[2]["chance_loss"] == pytest.approx(math.log(2))


def test_no_history_or_no_validation_gives_no_verdict():
    assert verdict([])[0] == "no verdict"
    label, rule, ev = verdict([{"loss": 1.0, "accuracy": 0.6}])
    assert label == "no verdict" and "validation" in rule and ev == {}


@pytest.mark.parametrize("name, expected", [("mlp-cifar10-100-epochs", "overfitting"),
                                            ("mlp-cifar10-1-epoch-lr1e-5", "underfitting"),
                                            ("mnist-cnn", "good fit")])
def test_recorded_clear_cases(name, expected):
    label, _, ev = verdict(recorded(name))
    assert label == expected, ev["reasons"]
