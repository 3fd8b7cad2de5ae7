"""Training speed, cnnlab against Keras 3 (TensorFlow and JAX backends) and a plain PyTorch loop, in one run.

For each of the lab's four presets at its own batch size: training images per second of cnnlab's real
training loop (bench/cnnlab_peer.py: Trainer.fit in fp32, and in bf16 where the CPU has it natively), of Keras
(bench/keras_peer.py: model.fit as the lab wrote it, and tf.data, XLA and mixed bf16 variants, on TensorFlow
and on JAX) and of the loop PyTorch's MNIST example writes (bench/torch_peer.py), on synthetic in-memory data;
then the ratios of cnnlab at the preset's default precision to the best Keras figure and to the plain loop, and
the GFLOP/s cnnlab reaches against this machine's measured matrix-multiply peak in the precision it uses. Every
side runs in a fresh process for each preset, and a preset's figures on every side are taken one right after
the other. Every figure is the fastest of --repeats timed epochs after an untimed first one (tracing, XLA
compiling, warm-up), the same rule on both sides: the machine is shared, and a stall in one short epoch says
nothing about either framework.

The last column is a reference for that fraction: the matrix multiplies one training step of the model needs
(convolutions written as im2col GEMMs: forward, weight gradient, input gradient), each timed alone at its own
shape, as a fraction of the same peak. The GFLOP/s column counts the same multiplies. Direct convolutions can
beat it a little (oneDNN's fp32 ones do on cifar-cnn); on small batches and maps it sits far below the large
square GEMM the peak is measured with.

    python bench/speed.py                       # Keras from this Python (pip install -e '.[bench]')
    python bench/speed.py --keras-python /path/to/venv/bin/python --steps 100
    python bench/speed.py --no-keras --presets mlp --steps 5     # cnnlab and the plain loop only, tiny
    python bench/speed.py --device cuda         # on a GPU: cnnlab's images/s in fp32 and its default precision
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from cnnlab.core import devices
from cnnlab.core.errors import CnnlabError
from cnnlab.data import datasets
from cnnlab.models import presets, specs

HERE = Path(__file__).resolve().parent
LAB_PRESETS = ["mlp", "mlp-deep", "mnist-cnn", "cifar-cnn"]  # the ones the Keras peer builds too
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def gemm_rate(m: int, k: int, n: int, dtype: torch.dtype, seconds: float) -> float:
    """GFLOP/s of an (m x k) @ (k x n) matrix multiply, repeated for about `seconds`."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    a @ b
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        done += 1
    return 2 * m * k * n * done / (time.perf_counter() - start) / 1e9


def gemm_peak(dtype: torch.dtype, n: int = 2048) -> float:
    """GFLOP/s of a large square matrix multiply: the most this machine's cores give in `dtype`."""
    return gemm_rate(n, n, n, dtype, 1.0)


def step_gemms(model: torch.nn.Module, shape: tuple, batch: int) -> list:
    """(m, k, n) of every matrix multiply in one training step, convolutions as im2col GEMMs: each layer's
    forward and weight gradient, and the input gradient of every layer after the first one with trained
    parameters (a frozen whitening layer's bias trains, so the conv after it needs its input gradient)."""
    gemms, upstream = [], [False]  # has a trained parameter come before this layer?

    def record(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            rows = batch * output.shape[2] * output.shape[3]
            inner, outer = module.in_channels * module.kernel_size[0] * module.kernel_size[1], module.out_channels
        elif isinstance(module, torch.nn.Linear):
            rows, inner, outer = batch, module.in_features, module.out_features
        else:
            rows = None
        if rows:
            gemms.append((rows, inner, outer))
            if module.weight.requires_grad:
                gemms.append((outer, rows, inner))
            if upstream[0]:
                gemms.append((rows, outer, inner))
        upstream[0] |= any(p.requires_grad for p in module.parameters(recurse=False))

    hooks = [m.register_forward_hook(record) for m in model.modules()]
    with torch.no_grad():  # training mode: the network as one step runs it (eval would add test-time flips)
        model.train()(torch.zeros(batch, *shape))
    for h in hooks:
        h.remove()
    return gemms


def preset_gemms(name: str) -> tuple:
    """(step_gemms of a preset's network at its batch size, the batch size)."""
    cfg = presets.preset(name)
    shape = datasets.BUILTIN[cfg.dataset]["shape"]
    model, _ = specs.build(cfg.layers, shape, 10, cfg.init)
    return step_gemms(model, shape, cfg.batch_size), cfg.batch_size


def gemm_ceiling(gemms: list, dtype: torch.dtype) -> float:
    """GFLOP/s of one training step's matrix multiplies (step_gemms), each timed alone."""
    seconds = sum(2 * m * k * n / gemm_rate(m, k, n, dtype, 0.2) for m, k, n in gemms)
    return sum(2 * m * k * n for m, k, n in gemms) / seconds


def peer_speeds(script: str, python: str, names: list, steps: int, repeats: int, env: dict | None = None,
                options: tuple = ()) -> dict:
    """{preset: {variant: images/s}} from a side's script (cnnlab_peer.py, keras_peer.py, torch_peer.py) in a
    process of its own."""
    command = [python, str(HERE / script), *names, "--steps", str(steps), "--repeats", str(repeats), *options]
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode
        sys.exit(f"bench: the peer {script} {env or ''} failed (for Keras: pip install -e '.[bench]'):\n{last}")
    speeds = {}
    for line in out.stdout.splitlines():
        row = json.loads(line)
        if "images_per_s" in row:
            speeds.setdefault(row["preset"], {})[row["variant"]] = row["images_per_s"]
    return speeds


def device_table(names: list, device_name: str, steps: int, repeats: int):
    """On a GPU (or MPS): images/s of each preset in fp32 and in the precision `auto` picks there. Keras is not
    measured: the GPU machines this was written for have no TensorFlow."""
    device = devices.resolve(device_name)
    print(f"device: {devices.describe(device)}, torch {torch.__version__}")
    print(f"training images/s, batch = the lab's, fastest of {repeats} epochs of {steps} steps")
    print("preset | batch | cnnlab fp32 | cnnlab default (precision) | default / fp32")
    for name in names:
        default = devices.precision(device, presets.preset(name).precision)
        options = ("--device", device_name, "--variants", ",".join(dict.fromkeys(["fp32", default])))
        got = peer_speeds("cnnlab_peer.py", sys.executable, [name], steps, repeats, options=options)[name]
        fp32, fast = got["fp32"], got[default]
        print(f"{name} | {presets.preset(name).batch_size} | {fp32:,.0f} | {fast:,.0f} ({default}) | "
              f"{ratio(fast, fp32)}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=",".join(LAB_PRESETS))
    ap.add_argument("--steps", type=int, default=100, help="batches per timed epoch")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed epochs per figure, on both sides; the fastest counts (this machine is shared)")
    ap.add_argument("--keras-python", default=sys.executable, help="a Python with tensorflow and keras")
    ap.add_argument("--no-keras", action="store_true", help="no Keras peer (the plain PyTorch loop still runs)")
    ap.add_argument("--no-jax", action="store_true", help="Keras on TensorFlow only, not also on JAX")
    ap.add_argument("--device", default="cpu", help="cpu (default: the table beside Keras), or cuda, cuda:N, mps: "
                                                    "cnnlab alone on that device")
    args = ap.parse_args()
    if args.steps < 1 or args.repeats < 1:
        sys.exit("bench: --steps and --repeats must be at least 1")
    names = args.presets.split(",")
    unknown = [n for n in names if n not in LAB_PRESETS]
    if unknown:
        sys.exit(f"bench: unknown preset(s) {', '.join(unknown)}; choose from {', '.join(LAB_PRESETS)}")
    if args.device != "cpu":
        try:
            devices.resolve(args.device)
        except CnnlabError as e:
            sys.exit(f"bench: {e}")
        return device_table(names, args.device, args.steps, args.repeats)
    threads = devices.cores()
    torch.set_num_threads(threads)
    # Each preset at its own default precision (auto: bf16 on CPUs with native bf16).
    default = {n: devices.choose_precision("cpu", presets.preset(n).precision, cpu_bf16=devices.native_bf16())
               for n in names}
    peak = {p: gemm_peak(dtype) for p, dtype in DTYPES.items()}
    print(f"machine: {threads} cores, torch {torch.__version__}; matrix-multiply peak "
          f"{peak['fp32']:.0f} GFLOP/s fp32, {peak['bf16']:.0f} GFLOP/s bf16")
    # cnnlab's bf16 only where it is native: elsewhere it is emulated, several times slower than fp32, and
    # auto trains in fp32 (a Zen 3 EPYC: cifar-cnn 37 img/s in bf16, 496 in fp32).
    measured = ["fp32", "bf16"] if devices.native_bf16() or "bf16" in default.values() else ["fp32"]
    sides = [("cnnlab", "cnnlab_peer.py", sys.executable, None, ("--variants", ",".join(measured))),
             ("plain PyTorch", "torch_peer.py", sys.executable, None, ())]
    if not args.no_keras:
        sides += [("Keras-TF", "keras_peer.py", args.keras_python, {"KERAS_BACKEND": "tensorflow"}, ())]
        sides += [] if args.no_jax else [("Keras-JAX", "keras_peer.py", args.keras_python, {"KERAS_BACKEND": "jax"},
                                          ("--variants", "fit,bf16"))]
    peers = {}  # {side: {preset: {variant: images/s}}}
    for name in names:  # each preset's sides back to back: the machine's speed drifts over minutes
        for side, script, python, env, options in sides:
            got = peer_speeds(script, python, [name], args.steps, args.repeats, env, options).get(name, {})
            peers.setdefault(side, {})[name] = got
            print(f"  {side} {name}: " + ", ".join(f"{v} {ips:,.0f} img/s" for v, ips in got.items()), flush=True)
    ours = peers["cnnlab"]
    print(f"\ntraining images/s, batch = the lab's, fastest of {args.repeats} epochs of {args.steps} steps, same "
          f"machine, same run")
    keras_sides = [side for side, *_ in sides if side.startswith("Keras")]
    head = ["preset", "batch", *[f"{side} best (variant)" for side in keras_sides], "plain PyTorch", "cnnlab fp32",
            "cnnlab bf16", "cnnlab default", "default / best Keras", "default / plain PyTorch", "GFLOP/s", "of peak",
            "GEMMs alone"]
    rows = []
    for name in names:
        fast = default[name]
        ips = ours[name][fast]
        gemms, batch = preset_gemms(name)  # GFLOP/s and the last column count the same multiplies
        gflop = sum(2 * m * k * n for m, k, n in gemms) / batch / 1e9
        bests = {side: max(peers[side][name].items(), key=lambda kv: kv[1], default=None) for side in keras_sides}
        best_keras = max((b[1] for b in bests.values() if b), default=None)
        plain = peers["plain PyTorch"][name].get("plain loop")
        rows.append([name, str(batch), *[f"{b[1]:,.0f} ({b[0]})" if b else "-" for b in bests.values()],
                     f"{plain:,.0f}", f"{ours[name]['fp32']:,.0f}", f"{ours[name]['bf16']:,.0f}" if "bf16" in ours[name] else "-",
                     f"{ips:,.0f} ({fast})", ratio(ips, best_keras) if best_keras else "-", ratio(ips, plain),
                     f"{ips * gflop:.0f}", f"{ips * gflop / peak[fast]:.0%}",
                     f"{gemm_ceiling(gemms, DTYPES[fast]) / peak[fast]:.0%}"])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths]] + rows:
        print(" | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    if "bf16" not in measured:
        print("cnnlab bf16: not measured, this CPU has no native bf16 (AVX512-BF16 or AMX) and cnnlab trains in fp32")


def ratio(ours: float, theirs: float) -> str:
    """ours / theirs of the figures as printed (whole images/s), so that dividing the table's own numbers gives
    the table's ratio: from the unrounded ones a tiny run once printed 1.08x where its figures divide to 1.09x."""
    return f"{round(ours) / round(theirs):.2f}x"


if __name__ == "__main__":
    main()
