"""Keras-style callbacks: one per file, each with Keras' names and semantics, each resumable.

Subclass `Callback` and pass it to `cnnlab.train(callbacks=[...])`. Hooks, as in Keras: `on_train_begin(logs)`,
`on_epoch_begin(epoch, logs)`, `on_train_batch_end(batch, logs)` (logs: `loss`, the epoch's mean so far, and
`batch_loss`), `on_epoch_end(epoch, logs)` (loss, accuracy, val_loss, val_accuracy, lr, seconds) and
`on_train_end(logs)`; cnnlab adds `on_epoch_saved(epoch, logs)`, called once the epoch's resume point is on disk.
Epochs and batches are counted from 0, as in Keras, and printed from 1. A callback sees `self.model` (the
torch module being trained) and `self.trainer` (its `scored_model` (the weights' moving average with use_ema),
`lr`, `history` and `save_model`); setting `self.model.stop_training = True` or `self.trainer.stop_training =
True` ends training after this epoch. `state_dict()` must hold everything needed to continue exactly after a
resume.
"""

import math


class Callback:
    trainer = None

    def set_trainer(self, trainer):
        self.trainer = trainer

    @property
    def model(self):
        return self.trainer.model if self.trainer else None

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch: int, logs=None):
        pass

    def on_train_batch_end(self, batch: int, logs=None):
        pass

    def on_epoch_end(self, epoch: int, logs=None):
        pass

    def on_epoch_saved(self, epoch: int, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict):
        pass


def resolve_mode(monitor: str, mode: str) -> str:
    """Keras' 'auto': accuracy-like metrics are maximised, everything else (losses) minimised."""
    if mode in ("min", "max"):
        return mode
    return "max" if ("acc" in monitor or "auc" in monitor) else "min"


def worst(mode: str) -> float:
    return math.inf if mode == "min" else -math.inf


from cnnlab.training.callbacks.csv_logger import CSVLogger  # noqa: E402
from cnnlab.training.callbacks.early_stopping import EarlyStopping  # noqa: E402
from cnnlab.training.callbacks.model_checkpoint import ModelCheckpoint  # noqa: E402
from cnnlab.training.callbacks.progress_bar import ProgressBar  # noqa: E402
from cnnlab.training.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau  # noqa: E402
from cnnlab.training.callbacks.tensorboard import TensorBoard  # noqa: E402
from cnnlab.training.callbacks.terminate_on_nan import TerminateOnNaN  # noqa: E402

__all__ = ["Callback", "CSVLogger", "EarlyStopping", "ModelCheckpoint", "ProgressBar", "ReduceLROnPlateau",
           "TensorBoard", "TerminateOnNaN"]
