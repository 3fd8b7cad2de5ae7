"""TensorBoard: what TensorBoard itself reads back from the event files, Keras' tags and layout."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callback_helpers import FakeTrainer
from cnnlab.training.callbacks import TensorBoard
from conftest import cnnlab


def scalars(folder, tag):
    ea = EventAccumulator(str(folder))
    ea.Reload()
    return [(e.step, round(e.value, 6)) for e in ea.Scalars(tag)]


def run_epochs(log_dir, start, losses):
    cb, trainer = TensorBoard(log_dir), FakeTrainer()
    trainer.epoch = start
    cb.set_trainer(trainer)
    cb.on_train_begin()
    for epoch, loss in enumerate(losses, start):
        cb.on_epoch_end(epoch, {"loss": loss, "accuracy": 1 - loss, "val_loss": loss + 0.1,
                                "val_accuracy": 0.9 - loss, "lr": 0.01})
    cb.on_train_end()


def test_keras_tags_train_and_validation_and_a_resume_without_duplicates(tmp_path):
    run_epochs(tmp_path, 0, [0.5, 0.4, 0.3])
    run_epochs(tmp_path, 2, [0.25, 0.2])  # resumed at epoch 3 (index 2): the first run's epoch 3 is replaced
    assert scalars(tmp_path / "train", "epoch_loss") == [(0, 0.5), (1, 0.4), (2, 0.25), (3, 0.2)]
    assert scalars(tmp_path / "validation", "epoch_loss") == [(0, 0.6), (1, 0.5), (2, 0.35), (3, 0.3)]
    assert scalars(tmp_path / "validation", "epoch_accuracy")[-1] == (3, 0.7)
    assert scalars(tmp_path / "train", "epoch_learning_rate")[0] == (0, 0.01)


def test_train_tensorboard_flag_writes_event_logs(real_data, tmp_path):
    r = cnnlab("train", "mlp", "--dataset", "mnist", "--name", "tb", "--runs", tmp_path, "--epochs", 2,
               "--set", "train_subset=1000", "--set", "test_subset=100", "--tensorboard",
               env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    steps = [s for s, _ in scalars(tmp_path / "tb" / "tensorboard" / "train", "epoch_accuracy")]
    assert steps == [0, 1]
