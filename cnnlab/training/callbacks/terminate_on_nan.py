"""TerminateOnNaN: stop at the first step whose loss is NaN or infinite.

Keras' TerminateOnNaN only sets stop_training; this one raises, so the run is recorded as failed with the step
and the fix. The weights that produced the loss are bad already: training.divergence keeps the resume point
saved before them, and tells a re-run with the same settings that it would diverge again."""

import math

from cnnlab.training import divergence
from cnnlab.training.callbacks.base import Callback


class TerminateOnNaN(Callback):
    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("batch_loss")
        if loss is not None and not math.isfinite(loss):
            # that step's loss came from the weights after the step before
            step = logs.get("loss_step", self.trainer.step)
            divergence.stop(self.trainer, f"loss became {loss}", step, step - 1)
