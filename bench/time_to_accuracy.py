"""Wall time for a preset to reach a test accuracy on real data, data loading included.

The clock starts before the data set is loaded and stops at the end of the first epoch whose test accuracy
reaches the target. Test accuracy is scored after every epoch (validate_on = test, as the lab's own
model.fit(validation_data=(x_test, y_test)) did; in the training precision, as Keras validates); nothing is
chosen on it, and its evaluation time counts. The final fp32 test score of the last weights is printed too.
Prints each epoch's wall time and test accuracy, and plots accuracy against minutes.

    python bench/time_to_accuracy.py mnist-cnn --target 0.99
    python bench/time_to_accuracy.py cifar-fast --target 0.90 --data ../shared/data/cifar10-jpeg.tar.gz
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from cnnlab.core import config
from cnnlab.core.errors import CnnlabError
from cnnlab.experiments.runs import train_run
from cnnlab.models import presets
from cnnlab.training.callbacks import Callback


class StopAtTarget(Callback):
    """Records (wall seconds since `start`, test accuracy) per epoch; stops training at the target."""

    def __init__(self, start: float, target: float, stop: bool = True):
        self.start, self.target, self.stop, self.curve, self.reached = start, target, stop, [], None

    def on_epoch_end(self, epoch, logs):
        seconds = time.perf_counter() - self.start
        self.curve.append({"epoch": epoch + 1, "wall_s": round(seconds, 2), "test_accuracy": logs["val_accuracy"]})
        print(f"  epoch {epoch + 1}: {seconds:.1f} s wall, test accuracy {logs['val_accuracy']:.4f}", flush=True)
        if self.reached is None and logs["val_accuracy"] >= self.target:
            self.reached = self.curve[-1]
            self.trainer.stop_training = self.stop


def plot(curve: list, target: float, title: str, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([c["wall_s"] / 60 for c in curve], [c["test_accuracy"] for c in curve], "o-", label="test accuracy")
    ax.axhline(target, color="grey", ls="--", label=f"target {target}")
    ax.set(xlabel="wall minutes (data loading included)", ylabel="test accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset")
    ap.add_argument("--target", type=float, required=True)
    ap.add_argument("--data", help="a data folder or archive (default: the preset's data set)")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    ap.add_argument("--all-epochs", action="store_true", help="train every epoch of the preset, for the whole curve")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="tiny runs for tests")
    ap.add_argument("--out", type=Path, help="folder for the run, curve.png and curve.json (default: a temp folder)")
    args = ap.parse_args()
    start = time.perf_counter()
    try:
        cfg = presets.preset(args.preset)
        cfg.validate_on, cfg.precision = "test", args.precision
        if args.data:
            cfg.data = args.data
        for item in args.set:
            config.set_value(cfg, *config.parse_set(item))
        out = args.out or Path(tempfile.mkdtemp(prefix="cnnlab-tta-"))
        stop = StopAtTarget(start, args.target, stop=not args.all_epochs)
        result = train_run(cfg, out / args.preset, fresh=True, say=lambda *a: None, extra_callbacks=[stop])
    except CnnlabError as e:
        sys.exit(f"time_to_accuracy: error: {e}")
    verdict = (f"reached {args.target} at {stop.reached['wall_s']:.1f} s wall (epoch {stop.reached['epoch']})"
               if stop.reached else f"did not reach {args.target}: best {max(c['test_accuracy'] for c in stop.curve):.4f}")
    print(f"{args.preset}: {verdict}; the last weights score {result.test.accuracy:.4f} in the fp32 "
          f"evaluation (the epochs' scores are in the training precision); {time.perf_counter() - start:.1f} s in all")
    (out / "curve.json").write_text(json.dumps({"preset": args.preset, "target": args.target,
                                                "reached": stop.reached, "curve": stop.curve}, indent=2))
    plot(stop.curve, args.target, f"{args.preset}: test accuracy against wall time", out / "curve.png")
    print(f"curve: {out / 'curve.png'}")


if __name__ == "__main__":
    main()
