"""ModelCheckpoint: save the model every epoch, or only when the monitored metric improves.

`filepath` is relative to the run folder and may use the epoch (1-based, as Keras prints it) and any log
value: "epoch{epoch:03d}-{val_loss:.3f}.pt". With save_best_only, "improves" means strictly better than
every earlier epoch (no min_delta, as in Keras).
"""

from cnnlab.training.callbacks.base import Callback, improves, resolve_mode, worst


class ModelCheckpoint(Callback):
    def __init__(self, filepath="best.pt", monitor="val_loss", mode="auto", save_best_only=True):
        self.filepath, self.monitor, self.save_best_only = filepath, monitor, save_best_only
        self.mode = resolve_mode(monitor, mode)
        self.best = worst(self.mode)
        self.saved = []  # (epoch, path) of every save, for the user and the tests

    def on_epoch_end(self, epoch, logs):
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                return
            if not improves(self.mode, current, self.best):
                return
            self.best = current
        self.trainer.save_model(path, epoch, logs)
        self.saved.append((epoch, path))

    def state_dict(self):
        return {"best": self.best, "saved": self.saved}

    def load_state_dict(self, state):
        self.best, self.saved = state["best"], [tuple(s) for s in state["saved"]]
