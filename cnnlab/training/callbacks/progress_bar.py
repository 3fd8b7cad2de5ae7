"""ProgressBar: a live bar per epoch on a terminal or in a Jupyter notebook (tqdm), and one plain line per epoch,
printed once the epoch is saved, everywhere (CI logs stay readable: no bar where nobody watches it live)."""

import sys

from cnnlab.training.callbacks.base import Callback


def format_logs(logs: dict) -> str:
    parts = [f"{k} {v:.4f}" for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")]
    return " - ".join(parts + [f"lr {logs['lr']:.3g}", f"{logs['seconds']:.1f}s"])


def in_notebook() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"  # a Jupyter kernel, not a terminal IPython


class ProgressBar(Callback):
    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar = None

    def _new_bar(self, title: str, steps: int):
        if in_notebook():
            from tqdm.auto import tqdm  # a widget where ipywidgets is installed, else text
        elif self.stream.isatty():
            from tqdm import tqdm
        else:
            return None
        return tqdm(total=steps, desc=title, file=self.stream, leave=False, unit="step", dynamic_ncols=True)

    def on_epoch_begin(self, epoch, logs=None):
        t = self.trainer
        self.title = f"Epoch {epoch + 1}/{t.cfg.epochs}"
        self.bar = self._new_bar(self.title, t.steps_per_epoch)
        if self.bar is not None and t.batch:
            self.bar.update(t.batch)  # an epoch resumed mid-way

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(batch + 1 - self.bar.n)
            self.bar.set_postfix_str(f"loss {logs['loss']:.4f}", refresh=False)

    def on_epoch_saved(self, epoch, logs=None):
        self.close()
        print(f"{self.title} - {format_logs(logs)}", flush=True)

    def on_train_end(self, logs=None):
        self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
