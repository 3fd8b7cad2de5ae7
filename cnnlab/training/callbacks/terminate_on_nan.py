"""TerminateOnNaN: stop at the first step whose loss is NaN or infinite.

Keras' TerminateOnNaN only sets stop_training; this one raises, so the run is recorded as failed with the step
and the fix, and the weights that diverged are never saved (the last resume point on disk is from before)."""

import math

from cnnlab.core.errors import CnnlabError
from cnnlab.training.callbacks import Callback


class TerminateOnNaN(Callback):
    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("batch_loss")
        if loss is not None and not math.isfinite(loss):
            raise CnnlabError(f"loss became {loss} at epoch {self.trainer.epoch + 1}, step {batch + 1}; "
                              f"the last good checkpoint is kept (try a lower optimizer.lr)")
