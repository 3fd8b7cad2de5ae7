from callback_helpers import drive
from cnnlab.training.callbacks import ModelCheckpoint


def test_save_best_only_saves_on_strict_improvement():
    ck = ModelCheckpoint("best.pt", save_best_only=True)
    trainer, _ = drive(ck, [1.0, 0.8, 0.8, 0.9, 0.7])
    assert [e for e, _ in trainer.saves] == [0, 1, 4]


def test_every_epoch_with_pattern():
    ck = ModelCheckpoint("epoch{epoch:02d}-{val_loss:.1f}.pt", save_best_only=False)
    trainer, _ = drive(ck, [1.0, 1.5, 0.5])
    assert [p for _, p in trainer.saves] == ["epoch01-1.0.pt", "epoch02-1.5.pt", "epoch03-0.5.pt"]


def test_max_mode_for_accuracy_and_missing_metric_skips():
    ck = ModelCheckpoint("best.pt", monitor="val_accuracy")
    trainer, _ = drive(ck, [0.5, 0.4, 0.6], monitor="val_accuracy")
    assert [e for e, _ in trainer.saves] == [0, 2]
    trainer, _ = drive(ModelCheckpoint("best.pt", monitor="val_accuracy"), [0.5, 0.6])  # logs hold val_loss only
    assert trainer.saves == []


def test_resumed_best_is_remembered():
    first = ModelCheckpoint("best.pt")
    drive(first, [0.5, 0.3])
    resumed = ModelCheckpoint("best.pt")
    resumed.load_state_dict(first.state_dict())
    trainer, _ = drive(resumed, [0.4, 0.2])
    assert [e for e, _ in trainer.saves] == [1]  # 0.4 is worse than the 0.3 saved before the resume
