"""Keras-style callbacks: one per file, each with Keras' names and semantics, each resumable.

A callback sees the trainer (its `model`, `scored_model` (the weights' moving average with use_ema), `lr`,
`stop_training` flag and `save_model`) and the epoch's logs (loss, accuracy, val_loss, val_accuracy, lr,
seconds). Epochs are counted from 0 inside, as in Keras, and printed from 1. `state_dict()` must hold
everything needed to continue exactly after a resume.
"""

import math


class Callback:
    trainer = None

    def set_trainer(self, trainer):
        self.trainer = trainer

    def on_train_begin(self):
        pass

    def on_epoch_end(self, epoch: int, logs: dict):
        pass

    def on_train_end(self):
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


from cnnlab.callbacks.csv_logger import CSVLogger  # noqa: E402
from cnnlab.callbacks.early_stopping import EarlyStopping  # noqa: E402
from cnnlab.callbacks.model_checkpoint import ModelCheckpoint  # noqa: E402
from cnnlab.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau  # noqa: E402
from cnnlab.callbacks.tensorboard import TensorBoard  # noqa: E402

__all__ = ["Callback", "CSVLogger", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau", "TensorBoard"]
