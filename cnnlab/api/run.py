"""A run from Python: `train` (Keras' fit, into the same run folder, registry and outputs as `cnnlab train`),
`load_run`, and the `Run` they return."""

import functools
import io
import sys
from pathlib import Path

import numpy as np

from cnnlab.api.library import Model, Report, compare, report, resolve
from cnnlab.core import config
from cnnlab.core.errors import CnnlabError
from cnnlab.data.arrays import images_from_array, labels_from_array
from cnnlab.experiments import runs
from cnnlab.models import inference, results
from cnnlab.models.inference import Evaluation
from cnnlab.models.results import RunResult
from cnnlab.reports import facts, plots
from cnnlab.reports import report as _report
from cnnlab.training import distributed

ARRAYS_FILE = "data.npz"  # x, y given to train() are kept in the run folder, so the run resumes and evaluates


def train(target="mnist-cnn", *, dataset=None, data=None, x=None, y=None, validation_data=None, epochs=None,
          callbacks=(), run_dir=None, fresh: bool = False, runs_dir="runs", data_dir=None, say=print,
          **overrides) -> "Run":
    """Train a preset (or a .toml file, or a Config) into `run_dir` (default runs/<name>), or resume it: the same
    run folder, registry and outputs as `cnnlab train`. `x, y` (numpy arrays or tensors) train directly, as
    model.fit(x, y) does; `validation_data=(x_val, y_val)` is then validated on, as Keras does. Overrides are
    config keys: `optimizer__lr=0.1`, `early_stopping={"patience": 3}`."""
    cfg, name = resolve(target, {"dataset": dataset, "data": data, "epochs": epochs, **overrides}, data_dir)
    arrays = x is not None or y is not None
    run_dir = Path(run_dir) if run_dir else runs.run_folder(runs_dir, f"{cfg.preset or 'custom'}-arrays" if arrays
                                                            else name)
    if arrays:
        cfg.data = _keep_arrays(x, y, validation_data, run_dir, fresh)
        if validation_data is not None:
            cfg.validate_on = "test"
    elif validation_data is not None:
        raise CnnlabError("validation_data goes with x and y; for a data set use val_split or validate_on='test'")
    try:
        runs.train_run(cfg, run_dir, data_dir, fresh, say=say, extra_callbacks=list(callbacks))
        distributed.barrier()  # ranks leave together: rank 0 may still be writing results when the others end
    finally:
        distributed.finish()
    return Run(run_dir)


def _keep_arrays(x, y, validation_data, run_dir: Path, fresh: bool) -> str:
    """Write the arrays as run_dir/data.npz (Keras' mnist.npz layout); the config names that file."""
    if x is None or y is None:
        raise CnnlabError("give both x (images) and y (labels)")
    xt, yt = validation_data if validation_data is not None else (np.zeros((0, *np.shape(x)[1:])), [])
    arrays = {"x_train": images_from_array(x, "x"), "x_test": images_from_array(xt, "x_val")}
    arrays["y_train"] = labels_from_array(y, len(arrays["x_train"]), "y")
    arrays["y_test"] = labels_from_array(yt, len(arrays["x_test"]), "validation labels")
    blob = io.BytesIO()
    np.savez(blob, **arrays)
    path = (run_dir / ARRAYS_FILE).resolve()
    kept = path.read_bytes() if path.is_file() else None
    if kept != blob.getvalue():
        if kept is not None and (run_dir / "last.pt").exists() and not fresh:
            raise CnnlabError(f"{run_dir} was trained on other arrays; pass fresh=True to start over or another "
                              f"run_dir")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob.getvalue())
    return str(path)


class Run:
    """A run folder: its config, Keras-shaped history, scores, predictions, plots, report and exports."""

    def __init__(self, path):
        self.path = Path(path)
        facts.check_run_folder(self.path)

    @functools.cached_property
    def config(self) -> config.Config:
        return facts.gather(self.path, evaluate=False).cfg

    @property
    def history(self) -> dict:
        """Keras' History.history: metric name -> one value per epoch (loss, accuracy, val_loss, ...)."""
        rows = facts.read_history(self.path, None)
        keys = [k for k in (rows[0] if rows else {}) if k != "epoch"]
        return {k: [r.get(k) for r in rows] for k in keys}

    @property
    def result(self) -> RunResult | None:
        """results.json: the test scores, which weights, why training stopped; None before the run finishes.
        `run.result.test.accuracy`, or `run.result["test"]["accuracy"]` as the file reads."""
        return results.read(self.path)

    def evaluate(self, which: str = "best", data_dir=None) -> Evaluation:
        """Test loss, accuracy, per-class accuracy and confusion of the best (or last) weights on the run's test set."""
        return inference.evaluate_run(self.path, which, data_dir)[0]

    def predict(self, images, which: str = "best"):
        """Classes and probabilities for file paths, PIL images or a numpy/tensor batch (see Model.predict)."""
        return self.model(which).predict(images)

    def model(self, which: str = "best") -> Model:
        return Model(self.path if which == "best" else self.path / "last.pt")

    def plot(self):
        """The learning curves (loss and accuracy, train vs validation) as a matplotlib Figure; in a notebook it
        shows as a picture when it is a cell's last value."""
        rows = facts.read_history(self.path, None)
        return _shown_in_notebooks(plots.curves_figure(rows, f"{self.path.name} on {facts.data_name(self.config)}"))

    def report(self, out=None, data_dir=None) -> Report:
        return report([self.path], out, data_dir)

    def export(self, format: str = "onnx", out=None, check_images: int = 1000, data_dir=None, say=print) -> dict:
        """model.onnx or model.torchscript.pt in the run folder, checked against PyTorch on real test images."""
        return Model(self.path).export(format, out, check_images, data_dir, say)

    @property
    def summary(self):
        return compare([self.path])[0]

    @property
    def verdict(self) -> facts.Verdict:
        """Over- or underfitting, read off the curves: `label`, the `rule` in words, the `evidence` it used (with
        its `reasons`)."""
        return facts.gather(self.path, evaluate=False).verdict

    def __repr__(self):
        s = self.summary
        return f"Run({self.path}: {s.preset} on {s.data}, {s.status}, {s.epochs}/{s.max_epochs} epochs)"

    def _repr_html_(self) -> str:
        return _report.comparison_html([self.summary])


def _shown_in_notebooks(figure):
    """pyplot's inline backend registers IPython's PNG display for figures; cnnlab draws without pyplot (no global
    figure state), so it registers the same display itself when it runs inside IPython."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if shell is not None:
        from IPython.core.pylabtools import print_figure
        shell.display_formatter.formatters["image/png"].for_type(type(figure), lambda f: print_figure(f, "png"))
    return figure


def load_run(path) -> Run:
    """An existing run folder (trained by `cnnlab train` or `cnnlab.train`)."""
    return Run(path)
