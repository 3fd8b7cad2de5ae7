"""results.json: what a finished training ended with. The test score of the weights it kept, which weights those
are, why it stopped, and where and how it trained. `cnnlab train` writes it once, at the end; `cnnlab runs`, the
report, the lab's answers and `Run.result` read it through `read`."""

import json
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from cnnlab.core import checkpoints, paths
from cnnlab.models.inference import Evaluation

FILENAME = "results.json"


@dataclass
class RunResult:
    dataset: str
    source: str
    verified: bool  # the data's files matched their published digests
    classes: list
    epochs_run: int
    stopped_early: bool
    stopped_epoch: int | None  # numbered from 1, as printed; None when training ran all its epochs
    weights: str  # "best epoch 7 restored" or "last epoch 10": the weights that were scored and kept
    validation: str  # the hold-out, or a warning that the test set was validated on
    final: dict  # the last epoch's logs: loss, accuracy, val_loss, val_accuracy, lr, seconds
    test: Evaluation | None  # in fp32, on the test set; None without one
    threads: int = 0
    processes: int = 1
    precision: str = ""
    device: str = ""
    seconds_this_session: float = 0.0

    def __getitem__(self, key: str):
        """results.json's own shape, as the file reads (`result["test"]["accuracy"]`), for code written
        against the file; `result.test.accuracy` is the same number."""
        return self.to_dict()[key]

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["test"] = self.test.to_dict() if self.test else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunResult":
        """Raises ValueError naming what is missing; keys it does not know (a newer cnnlab's) are ignored."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        kept = {k: v for k, v in d.items() if k in names}
        test = kept.get("test")
        if test is not None:
            if not isinstance(test, dict) or not {"loss", "accuracy"} <= test.keys():
                raise ValueError("its test entry has no loss and accuracy")
            kept["test"] = Evaluation(test["loss"], test["accuracy"], test.get("per_class_accuracy", []),
                                      test.get("confusion", []), list(d.get("classes") or []))
        try:
            return cls(**kept)
        except TypeError:  # a required field is missing
            missing = [f.name for f in fields(cls) if f.name not in kept and f.default is MISSING]
            raise ValueError(f"it lacks {', '.join(missing)}") from None


def read(run_dir: Path) -> RunResult | None:
    """The run's results, or None before it has finished. A damaged file raises ValueError or OSError."""
    f = Path(run_dir) / FILENAME
    if not f.exists():
        return None
    return RunResult.from_dict(json.loads(paths.read_text(f, "results")))


def write(run_dir: Path, result: RunResult):
    checkpoints.atomic_write(Path(run_dir) / FILENAME, json.dumps(result.to_dict(), indent=2).encode())
