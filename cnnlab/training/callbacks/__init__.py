"""Keras-style callbacks: one per file, each with Keras' names and semantics, each resumable.

Subclass `Callback` and pass it to `cnnlab.train(callbacks=[...])`. Hooks, as in Keras: `on_train_begin(logs)`,
`on_epoch_begin(epoch, logs)`, `on_train_batch_end(batch, logs)` (logs: `loss`, the epoch's mean so far, and
`batch_loss`), `on_epoch_end(epoch, logs)` (loss, accuracy, val_loss, val_accuracy, lr, seconds) and
`on_train_end(logs)` (the last epoch's logs); cnnlab adds `on_epoch_saved(epoch, logs)`, called once the epoch's
resume point is on disk.
Epochs and batches are counted from 0, as in Keras, and printed from 1. A callback sees `self.model` (the
torch module being trained) and `self.trainer` (its `scored_model` (the weights' moving average with use_ema),
`lr`, `history` and `save_model`); setting `self.model.stop_training = True` or `self.trainer.stop_training =
True` ends training after this epoch. `state_dict()` must hold everything needed to continue exactly after a
resume.
"""

from cnnlab.training.callbacks.base import Callback
from cnnlab.training.callbacks.csv_logger import CSVLogger
from cnnlab.training.callbacks.early_stopping import EarlyStopping
from cnnlab.training.callbacks.model_checkpoint import ModelCheckpoint
from cnnlab.training.callbacks.progress_bar import ProgressBar
from cnnlab.training.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from cnnlab.training.callbacks.tensorboard import TensorBoard
from cnnlab.training.callbacks.terminate_on_nan import TerminateOnNaN

__all__ = ["Callback", "CSVLogger", "EarlyStopping", "ModelCheckpoint", "ProgressBar", "ReduceLROnPlateau",
           "TensorBoard", "TerminateOnNaN"]
