"""EarlyStopping: stop when the monitored metric has not improved for `patience` epochs.

Keras 3 semantics, kept exactly because students compare with Keras runs:
- an improvement is a change of more than `min_delta` in the monitored direction;
- every epoch counts toward `wait`, and an improvement resets it only if it also beats `baseline`;
- training stops at the first epoch > 0 where wait >= patience;
- epochs before `start_from_epoch` are ignored;
- with `restore_best_weights`, the best epoch's weights are put back when training ends, whether it
  stopped early or ran out of epochs (Keras 3 behaviour; Keras 2 restored only on an early stop).
"""

import copy

from cnnlab.training.callbacks.base import Callback, improves, resolve_mode


class EarlyStopping(Callback):
    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        self.monitor, self.patience, self.baseline = monitor, patience, baseline
        self.mode = resolve_mode(monitor, mode)
        self.min_delta = abs(min_delta)
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self.reset()

    def reset(self):
        """Forget everything seen so far, as Keras does at the start of every fit()."""
        self.wait, self.stopped_epoch, self.best, self.best_epoch, self.best_weights = 0, -1, None, -1, None

    def on_epoch_end(self, epoch, logs):
        current = logs.get(self.monitor)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self._weights(), epoch
        self.wait += 1
        if improves(self.mode, current, self.best, self.min_delta):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self._weights()
            if self.baseline is None or improves(self.mode, current, self.baseline, self.min_delta):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.trainer.model.load_state_dict(self.best_weights)
            self.trainer.restored_epoch = self.best_epoch

    def _weights(self):
        return copy.deepcopy(self.trainer.scored_model.state_dict())  # the moving average with use_ema

    def state_dict(self):
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                "best_epoch": self.best_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state):
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]
        self.best, self.best_epoch, self.best_weights = state["best"], state["best_epoch"], state["best_weights"]
