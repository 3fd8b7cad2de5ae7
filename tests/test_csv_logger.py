import csv

from callback_helpers import drive
from cnnlab.training.callbacks import CSVLogger


def test_rows_per_epoch_and_resume_rewrites_without_duplicates(tmp_path):
    path = tmp_path / "metrics.csv"
    first = CSVLogger(path)
    drive(first, [1.0, 0.5])
    resumed = CSVLogger(path)
    resumed.load_state_dict({"rows": first.state_dict()["rows"][:1]})  # the checkpoint knew only epoch 1
    resumed.set_trainer(None)
    resumed.on_epoch_end(1, {"val_loss": 0.4})
    rows = list(csv.DictReader(path.open()))
    assert [(r["epoch"], r["val_loss"]) for r in rows] == [("1", "1.0"), ("2", "0.4")]
