"""The rules every monitoring callback shares (training/callbacks/base.py), on synthetic values."""

import math

import pytest

from cnnlab.training.callbacks.base import improves, resolve_mode, worst


@pytest.mark.parametrize("monitor, mode, expected", [("val_loss", "auto", "min"), ("val_accuracy", "auto", "max"),
                                                     ("auc", "auto", "max"), ("val_accuracy", "min", "min")])
def test_auto_mode_maximises_accuracy_like_metrics_only(monitor, mode, expected):
    assert resolve_mode(monitor, mode) == expected


def test_an_improvement_must_beat_the_reference_by_more_than_min_delta():
    assert improves("min", 0.5, None) and improves("max", 0.5, None)
    assert improves("min", 0.49, 0.5) and not improves("min", 0.5, 0.5)
    assert not improves("min", 0.495, 0.5, min_delta=0.01) and improves("min", 0.489, 0.5, min_delta=0.01)
    assert improves("max", 0.52, 0.5, min_delta=0.01) and not improves("max", 0.505, 0.5, min_delta=0.01)
    assert improves("min", 1e9, worst("min")) and worst("min") == math.inf  # anything beats the worst
    assert improves("max", -1e9, worst("max")) and worst("max") == -math.inf
