"""ReduceLROnPlateau: multiply the learning rate by `factor` after `patience` epochs without improvement.

Keras semantics: improvement means better by more than `min_delta`; after a reduction, `cooldown` epochs
pass before waiting starts again; the rate never goes below `min_lr`.
"""

from cnnlab.training.callbacks.base import Callback, improves, resolve_mode, worst


class ReduceLROnPlateau(Callback):
    def __init__(self, monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4, cooldown=0, min_lr=0.0,
                 mode="auto"):
        if not 0 < factor < 1:
            raise ValueError("ReduceLROnPlateau factor must be in (0, 1)")
        self.monitor, self.factor, self.patience = monitor, factor, patience
        self.min_delta, self.cooldown, self.min_lr = min_delta, cooldown, min_lr
        self.mode = resolve_mode(monitor, mode)
        self.best, self.wait, self.cooldown_counter = worst(self.mode), 0, 0
        self.reductions = []  # (epoch, new lr)

    def on_epoch_end(self, epoch, logs):
        current = logs.get(self.monitor)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if improves(self.mode, current, self.best, self.min_delta):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience and self.trainer.lr > self.min_lr:
                self.trainer.lr = max(self.trainer.lr * self.factor, self.min_lr)
                self.reductions.append((epoch, self.trainer.lr))
                self.cooldown_counter, self.wait = self.cooldown, 0

    def state_dict(self):
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter,
                "reductions": self.reductions}

    def load_state_dict(self, state):
        self.best, self.wait, self.cooldown_counter = state["best"], state["wait"], state["cooldown_counter"]
        self.reductions = [tuple(r) for r in state["reductions"]]
