"""Data-parallel scaling on this machine: the same training (same global batch) in 1 process and in N
processes (torchrun ranks, gloo), one thread each; prints training images/s and the test accuracies.

    python scripts/scaling.py                      # mnist-cnn, 2 epochs, 1 vs 2 processes
    python scripts/scaling.py --preset mlp --dataset mnist --epochs 5 --procs 2
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def train(args, runs: Path, procs: int) -> dict:
    name = f"p{procs}"
    cmd = [sys.executable, "-m", "cnnlab", "train", args.preset, "--epochs", str(args.epochs), "--runs", str(runs),
           "--name", name, "--set", "threads=1", "--procs", str(procs)]
    if args.dataset:
        cmd += ["--dataset", args.dataset]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    result = json.loads((runs / name / "results.json").read_text())
    rows = (runs / name / "metrics.csv").read_text().splitlines()[1:]
    seconds = [float(r.split(",")[-1]) for r in rows]
    return {"result": result, "epoch_seconds": seconds}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mnist-cnn")
    ap.add_argument("--dataset", default="")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--train-images", type=int, default=54000, help="training images per epoch (for images/s)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {p: train(args, Path(tmp), p) for p in (1, args.procs)}
    print(f"{args.preset}, {args.epochs} epochs, global batch as the preset, 1 thread per process")
    print("processes | s/epoch (mean) | train images/s | test accuracy | test loss")
    base = None
    for p, r in runs.items():
        mean = sum(r["epoch_seconds"]) / len(r["epoch_seconds"])  # includes the validation pass, as Keras' does
        rate = args.train_images / mean
        base = base or rate
        t = r["result"]["test"]
        print(f"{p:9d} | {mean:14.1f} | {rate:14.0f} | {t['accuracy']:13.4f} | {t['loss']:.4f}   "
              f"({rate / base:.2f}x)")


if __name__ == "__main__":
    main()
