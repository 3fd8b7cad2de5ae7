"""Drive a callback with a synthetic metric sequence, the way Keras' own callback tests do."""

from types import SimpleNamespace

import torch


class FakeTrainer(SimpleNamespace):
    """Just the surface callbacks use: a model (and the scored one), a learning rate, a stop flag, a save hook."""

    def __init__(self):
        super().__init__(model=torch.nn.Linear(1, 1, bias=False), lr=0.1, stop_training=False,
                         restored_epoch=None, saves=[])

    @property
    def scored_model(self):  # the Trainer's moving average with use_ema; these tests train no average
        return self.model

    def save_model(self, path, epoch, logs):
        self.saves.append((epoch, path))


def drive(callback, values, monitor="val_loss", weights_follow_epoch=True):
    """Feed one value per epoch until the callback stops training; return (trainer, epochs run).
    The model's single weight is set to the epoch number, so restored weights tell which epoch they came from."""
    trainer = FakeTrainer()
    callback.set_trainer(trainer)
    callback.on_train_begin()
    epochs = 0
    for epoch, v in enumerate(values):
        if weights_follow_epoch:
            with torch.no_grad():
                trainer.model.weight.fill_(epoch)
        callback.on_epoch_end(epoch, {monitor: v})
        epochs += 1
        if trainer.stop_training:
            break
    callback.on_train_end()
    return trainer, epochs


def weight_epoch(trainer) -> int:
    return int(trainer.model.weight.item())
