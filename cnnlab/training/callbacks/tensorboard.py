"""TensorBoard: per-epoch scalars as Keras writes them — `epoch_loss` and `epoch_accuracy` under `train/` and
`validation/` (so TensorBoard overlays the two curves), and `epoch_learning_rate` under `train/`.

The event files are TensorBoard's own format, written by torch.utils.tensorboard; `tensorboard --logdir
runs/NAME/tensorboard` shows them. A resumed run purges events from the epoch it redoes, so no step appears twice.
"""

from pathlib import Path

from cnnlab.core.errors import CnnlabError
from cnnlab.training.callbacks.base import Callback


class TensorBoard(Callback):
    def __init__(self, log_dir: str):
        self.log_dir, self.writers = Path(log_dir), {}

    def on_train_begin(self, logs=None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise CnnlabError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        start = self.trainer.epoch if self.trainer else 0
        self.writers = {part: SummaryWriter(str(self.log_dir / part), purge_step=start or None)
                        for part in ("train", "validation")}

    def on_epoch_end(self, epoch, logs):
        train, val = self.writers["train"], self.writers["validation"]
        train.add_scalar("epoch_loss", logs["loss"], epoch)
        train.add_scalar("epoch_accuracy", logs["accuracy"], epoch)
        train.add_scalar("epoch_learning_rate", logs["lr"], epoch)
        if "val_loss" in logs:
            val.add_scalar("epoch_loss", logs["val_loss"], epoch)
            val.add_scalar("epoch_accuracy", logs["val_accuracy"], epoch)
        for w in self.writers.values():
            w.flush()  # an epoch on screen is an epoch in TensorBoard, even if the process is killed next

    def on_train_end(self, logs=None):
        for w in self.writers.values():
            w.close()
