import pytest

from callback_helpers import drive
from cnnlab.training.callbacks import ReduceLROnPlateau


def test_reduces_after_patience_and_respects_min_lr():
    cb = ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.03)
    trainer, _ = drive(cb, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    # 0.1 -> 0.05 at epoch 2 -> 0.03 (not 0.025) at epoch 4; at the floor, no more reductions.
    assert [e for e, _ in cb.reductions] == [2, 4]
    assert trainer.lr == pytest.approx(0.03)


def test_min_delta_and_cooldown():
    cb = ReduceLROnPlateau(factor=0.1, patience=1, min_delta=0.1, cooldown=2)
    trainer, _ = drive(cb, [1.0, 0.95, 0.9, 0.85, 0.8, 0.5])
    # 0.95 is not better by more than 0.1: reduce at epoch 1; epoch 2 is in cooldown; 0.85 (epoch 3) beats
    # 1.0 by more than 0.1; 0.8 does not beat 0.85 by 0.1: reduce at epoch 4.
    assert [e for e, _ in cb.reductions] == [1, 4]
    assert trainer.lr == pytest.approx(0.001)


def test_improvement_resets_wait():
    cb = ReduceLROnPlateau(factor=0.5, patience=2)
    drive(cb, [1.0, 1.0, 0.5, 0.5, 0.2, 0.2])
    assert cb.reductions == []
