"""The base class every callback extends, and the rules they share for the monitored metric."""

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


def improves(mode: str, value: float, reference, min_delta: float = 0.0) -> bool:
    """Keras' rule: better than `reference` by more than `min_delta` in the monitored direction; anything
    improves on no reference at all."""
    if reference is None:
        return True
    return value < reference - min_delta if mode == "min" else value > reference + min_delta
