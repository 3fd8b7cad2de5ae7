"""cnnlab's side of bench/speed.py: training images per second of cnnlab's real training loop (Trainer.fit, the
loop `cnnlab train` runs) on a preset, in one or more precisions, on synthetic in-memory data.

Run by bench/speed.py in a fresh process for each preset, as every other side is: a preset measured after
others in the same process inherits their heap and thread-pool state (on a Zen 3 EPYC, mnist-cnn measured
after the MLPs' bf16 runs read 883 img/s, in a fresh process 1,173). Prints one JSON line per preset and
precision: the fastest of --repeats timed epochs after an untimed first one, the rule every side follows.

    python bench/cnnlab_peer.py mnist-cnn --steps 40 --repeats 2 --variants fp32,bf16
    python bench/cnnlab_peer.py mlp --device cuda --variants fp32,auto
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from cnnlab.core import devices
from cnnlab.data import datasets
from cnnlab.data.datasets import Split
from cnnlab.models import presets, specs
from cnnlab.training.trainer import Trainer


def cnnlab_speed(name: str, precision: str, steps: int, repeats: int, device: str = "cpu") -> float:
    """Images/s of the fastest of `repeats` epochs of `steps` batches, after a first untimed one."""
    cfg = presets.preset(name)
    cfg.epochs, cfg.precision, cfg.autosave_seconds, cfg.device = 1 + repeats, precision, 0, device
    cfg.early_stopping.enabled = False
    n, shape = cfg.batch_size * steps, datasets.BUILTIN[cfg.dataset]["shape"]
    g = torch.Generator().manual_seed(0)
    data = Split(torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g),
                 torch.randint(0, 10, (n,), generator=g))
    torch.manual_seed(0)
    model, _ = specs.build(cfg.layers, shape, 10, cfg.init)
    with tempfile.TemporaryDirectory() as run_dir, open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet  # the progress lines
        try:
            history = Trainer(model, cfg, data, None, [], Path(run_dir)).fit()
        finally:
            sys.stdout = stdout
    return n / min(h["seconds"] for h in history[1:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("presets", nargs="+", choices=list(presets.PRESETS))
    ap.add_argument("--steps", type=int, default=100, help="batches per epoch")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs after the first; the fastest counts")
    ap.add_argument("--variants", default="fp32,bf16", help="precisions, comma-separated: fp32, bf16, fp16, auto "
                                                            "(auto: the one the preset trains with on --device)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.steps < 1 or args.repeats < 1:
        ap.error("--steps and --repeats must be at least 1")
    torch.set_num_threads(devices.cores())
    for name in args.presets:
        for variant in args.variants.split(","):
            precision = devices.precision(devices.resolve(args.device), presets.preset(name).precision) \
                if variant == "auto" else variant
            ips = cnnlab_speed(name, precision, args.steps, args.repeats, args.device)
            print(json.dumps({"preset": name, "variant": variant, "precision": precision,
                              "images_per_s": round(ips, 1)}), flush=True)


if __name__ == "__main__":
    main()
