"""CSVLogger: one row per epoch in metrics.csv, rewritten whole (atomically) so a resumed run never
holds a duplicate or half-written row for an epoch it is about to redo."""

import csv
import io
from pathlib import Path

from cnnlab.core.checkpoints import atomic_write
from cnnlab.training.callbacks.base import Callback


class CSVLogger(Callback):
    def __init__(self, filename: str):
        self.filename = Path(filename)
        self.rows = []

    def on_epoch_end(self, epoch, logs):
        self.rows.append({"epoch": epoch + 1, **logs})
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(self.rows[-1]), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write(self.filename, out.getvalue().encode())

    def state_dict(self):
        return {"rows": self.rows}

    def load_state_dict(self, state):
        self.rows = list(state["rows"])
