"""Run-to-run noise of the lab's quick-to-train networks: the same lab settings with other seeds, the figures the lab
printed read off each run, and their spread. Seed 0 is `cnnlab lab`'s own run when RUNS/lab holds it.

    python scripts/lab_noise.py --runs runs --seeds 0 1 2 --networks mlp mnist-cnn
"""

import argparse
import statistics
from pathlib import Path

import cnnlab


def figures(run) -> dict:
    h, test = run.history, run.result.test
    return {"final train acc": h["accuracy"][-1], "final val acc": h["val_accuracy"][-1],
            "test acc": test.accuracy, "test loss": test.loss}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--networks", nargs="+", default=["mlp", "mnist-cnn"])
    args = ap.parse_args()
    for name in args.networks:
        rows = {}
        for seed in args.seeds:
            lab_run = Path(args.runs) / "lab" / name
            folder = lab_run if seed == 0 and (lab_run / "results.json").is_file() else \
                Path(args.runs) / "lab-seeds" / f"{name}-seed{seed}"
            run = cnnlab.train(name, run_dir=folder, seed=seed, say=lambda *_: None, **cnnlab.lab_settings(name))
            rows[seed] = figures(run)
        print(f"\n{name} (lab settings; seeds {', '.join(map(str, args.seeds))})")
        for key in rows[args.seeds[0]]:
            values = [rows[s][key] for s in args.seeds]
            print(f"  {key:16s} " + "  ".join(f"{v:.4f}" for v in values) +
                  f"   mean {statistics.mean(values):.4f}, range {max(values) - min(values):.4f}")


if __name__ == "__main__":
    main()
