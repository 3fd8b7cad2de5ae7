"""Where a training step's time goes: torch.profiler over cnnlab's own Trainer.train_step, each op's self time
put in one category (matrix multiplies and convolutions, BatchNorm, pooling, activations, dropout, casts and
layout reorders, the loss, the optimizer, other ops), and what is left of the step's wall time (Python, the
dispatcher, waiting) as "outside ops"; and the minor page faults a step takes (memory the kernel maps in as it
is first written: thousands a step once made cifar-cnn's elementwise ops several times slower).

    python bench/profile_step.py [--presets mnist-cnn,cifar-cnn,cifar-fast] [--precision fp32,bf16] [--steps 10]
"""

import argparse
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from cnnlab.data import datasets
from cnnlab.data.datasets import Split
from cnnlab.data.transforms import to_input
from cnnlab.models import presets, specs
from cnnlab.training.trainer import Trainer

# An op's category: the first whose words appear in its name (aten::mkldnn_convolution -> "matmul/conv").
CATEGORIES = [
    ("matmul/conv", ("conv", "mm", "linear", "matmul", "addmm", "bmm", "_mkldnn")),
    ("batchnorm", ("batch_norm",)),
    ("pooling", ("pool",)),
    ("activation", ("relu", "threshold", "clamp_min", "gelu", "silu", "sigmoid", "tanh", "elu")),
    ("dropout", ("dropout", "bernoulli")),
    ("cast/layout", ("_to_copy", "copy_", "to", "contiguous", "clone", "reorder", "empty_like", "as_strided",
                     "view", "reshape", "permute", "transpose", "flatten")),
    ("loss", ("log_softmax", "nll_loss", "cross_entropy", "softmax")),
    ("optimizer", ("_foreach", "adam", "sgd", "lerp", "addcmul", "addcdiv", "sqrt", "zero_")),
]
ORDER = [name for name, _ in CATEGORIES] + ["other ops", "outside ops"]


def category(op: str) -> str:
    name = op.removeprefix("aten::").lower()
    for label, words in CATEGORIES:
        if any(w in name for w in words):
            return label
    return "other ops"


def op_times(events) -> list:
    """(op name, seconds) for each aten/oneDNN op's self time, except inside cnnlab's own autograd functions
    (cnnlab/models/dropout.py's _Dropout and its backward), which count whole under their own name: their
    random draws and multiplies are dropout's cost, not "other ops"."""
    own = [e for e in events if e.name.startswith("_Dropout")]
    inside = {id(child) for e in own for child in _descendants(e)}
    times = [(e.name, e.cpu_time_total / 1e6) for e in own]
    return times + [(e.name, e.self_cpu_time_total / 1e6) for e in events if id(e) not in inside
                    and (e.name.startswith("aten::") or e.name.startswith("mkldnn"))]


def _descendants(event):
    for child in event.cpu_children:
        yield child
        yield from _descendants(child)


def trainer_for(name: str, precision: str, batches: int) -> tuple:
    """A Trainer on random uint8 pictures of the preset's shape, and its first float batch."""
    cfg = presets.preset(name)
    cfg.precision, cfg.autosave_seconds = precision, 0
    shape = datasets.BUILTIN[cfg.dataset]["shape"]
    g = torch.Generator().manual_seed(0)
    n = cfg.batch_size * batches
    data = Split(torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g),
                 torch.randint(0, 10, (n,), generator=g))
    torch.manual_seed(0)
    model, _ = specs.build(cfg.layers, shape, 10, cfg.init)
    trainer = Trainer(model, cfg, data, None, [], Path(tempfile.mkdtemp()))
    return trainer, data


def profile_steps(name: str, precision: str, steps: int) -> tuple:
    """({category: ms per step}, step wall ms, minor page faults per step)."""
    trainer, data = trainer_for(name, precision, steps)
    bs = trainer.cfg.batch_size
    batches = [(to_input(data.x[i:i + bs], trainer.channels_last), data.y[i:i + bs]) for i in range(0, len(data), bs)]

    def train_on(some):
        for x, y in some:
            trainer.train_step(x, y, len(y))

    train_on(batches[:3])  # warm-up: oneDNN picks and caches its kernels on the first calls
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt  # counted without the profiler, whose records
    train_on(batches)                                              # fault and fragment memory themselves
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / len(batches)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        train_on(batches)
        wall = (time.perf_counter() - start) * 1000 / len(batches)
    spent = defaultdict(float)
    for event, seconds in op_times(prof.events()):
        spent[category(event)] += seconds * 1000 / len(batches)
    spent["outside ops"] = max(0.0, wall - sum(spent.values()))
    return spent, wall, faults


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="mnist-cnn,cifar-cnn,cifar-fast")
    ap.add_argument("--precision", default="fp32,bf16")
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(os.sched_getaffinity(0))} cores; "
          f"ms per training step (self time of the ops, by category), {args.steps} steps after 3 untimed")
    print("| preset | precision | step ms | " + " | ".join(ORDER) + " | not multiplying | page faults |")
    print("|---|---|---|" + "---|" * (len(ORDER) + 2))
    for name in args.presets.split(","):
        for precision in args.precision.split(","):
            spent, wall, faults = profile_steps(name, precision, args.steps)
            cells = " | ".join(f"{spent.get(c, 0.0):.1f}" for c in ORDER)
            outside = (wall - spent.get("matmul/conv", 0.0)) / wall
            print(f"| {name} | {precision} | {wall:.1f} | {cells} | {outside:.0%} | {faults:.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
