from callback_helpers import drive, weight_epoch
from cnnlab.training.callbacks import EarlyStopping


def test_stops_after_patience_epochs_without_improvement():
    es = EarlyStopping(patience=2)
    trainer, epochs = drive(es, [1.0, 0.9, 0.95, 0.92, 0.5, 0.4])
    assert epochs == 4 and es.stopped_epoch == 3 and es.best_epoch == 1 and trainer.stop_training


def test_patience_zero_stops_at_first_non_improvement():
    _, epochs = drive(EarlyStopping(patience=0), [1.0, 0.9, 0.9, 0.1])
    assert epochs == 3


def test_min_delta_requires_a_change_of_more_than_min_delta():
    # 1.0 -> 0.95 is exactly 0.05: not "more than" min_delta, so it is no improvement.
    es = EarlyStopping(min_delta=0.05, patience=1)
    _, epochs = drive(es, [1.0, 0.95, 0.949, 0.5])
    assert epochs == 2 and es.best == 1.0


def test_max_mode_is_inferred_for_accuracy():
    es = EarlyStopping(monitor="val_accuracy", patience=1)
    _, epochs = drive(es, [0.5, 0.6, 0.55, 0.7], monitor="val_accuracy")
    assert es.mode == "max" and epochs == 3 and es.best == 0.6


def test_best_epoch_inside_the_last_patience_epochs_when_training_ends():
    # Runs out of epochs before patience is exhausted: no early stop, but the best weights come back.
    es = EarlyStopping(patience=3, restore_best_weights=True)
    trainer, epochs = drive(es, [1.0, 0.8, 0.7, 0.75, 0.72])
    assert epochs == 5 and es.stopped_epoch == -1 and not trainer.stop_training
    assert weight_epoch(trainer) == 2 and trainer.restored_epoch == 2


def test_restore_best_weights_after_early_stop():
    es = EarlyStopping(patience=2, restore_best_weights=True)
    trainer, epochs = drive(es, [0.5, 0.4, 0.45, 0.46, 0.1])
    assert epochs == 4 and weight_epoch(trainer) == 1


def test_without_restore_the_last_weights_stay():
    trainer, epochs = drive(EarlyStopping(patience=1), [0.5, 0.6, 0.7])
    assert epochs == 2 and weight_epoch(trainer) == 1


def test_baseline_not_reached_stops_after_patience():
    es = EarlyStopping(monitor="val_accuracy", baseline=0.9, patience=2)
    _, epochs = drive(es, [0.5, 0.6, 0.6, 0.6, 0.95], monitor="val_accuracy")
    assert epochs == 3  # improvements below the baseline do not reset wait


def test_start_from_epoch_ignores_warmup():
    es = EarlyStopping(patience=1, start_from_epoch=3)
    _, epochs = drive(es, [0.1, 0.5, 0.9, 1.0, 1.1, 1.2])
    assert epochs == 5 and es.best_epoch == 3


def test_state_survives_a_resume():
    values = [1.0, 0.8, 0.9, 0.85, 0.95, 0.7]
    whole = EarlyStopping(patience=3, restore_best_weights=True)
    _, epochs_whole = drive(whole, values)
    first = EarlyStopping(patience=3, restore_best_weights=True)
    drive(first, values[:2])
    resumed = EarlyStopping(patience=3, restore_best_weights=True)
    resumed.load_state_dict(first.state_dict())
    trainer, _ = drive_from(resumed, values, 2)
    assert resumed.stopped_epoch == whole.stopped_epoch == 4 and weight_epoch(trainer) == 1


def drive_from(callback, values, start):
    import torch

    from callback_helpers import FakeTrainer
    trainer = FakeTrainer()
    callback.set_trainer(trainer)
    for epoch in range(start, len(values)):
        with torch.no_grad():
            trainer.model.weight.fill_(epoch)
        callback.on_epoch_end(epoch, {"val_loss": values[epoch]})
        if trainer.stop_training:
            break
    callback.on_train_end()
    return trainer, epoch + 1
