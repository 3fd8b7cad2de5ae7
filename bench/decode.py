"""A picture folder's decode throughput, cnnlab beside Keras' image_dataset_from_directory, in one run.

    python bench/decode.py FOLDER --image-size 64 [--repeats 1] [--keras-python /path/to/venv/bin/python]

Every file is read once first, so both sides find it in the page cache. Then each side, in a fresh process of
its own, back to back: cnnlab decodes the folder into its arrays (datasets.load, into an empty cache folder, so
it decodes rather than reading a cache; writing the cache is counted), Keras lists the folder and iterates its
dataset once (`image_dataset_from_directory(image_size=..., batch_size=None)`, then `ignore_errors()` so a
picture TensorFlow cannot decode is dropped alone, then batches of 256: erroring after batching would drop the
whole batch). Printed per side: pictures, seconds, pictures per second and the process's peak RSS;
the best of --repeats runs.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CNNLAB = """
import json, resource, sys, time
from cnnlab.data import datasets
from cnnlab.data.folders import PictureOptions
folder, side = sys.argv[1], int(sys.argv[2])
start = time.perf_counter()
ds = datasets.load(data=folder, pictures=PictureOptions(image_size=(side, side)))
seconds = time.perf_counter() - start
n = sum(len(s) for s in (ds.train, ds.val, ds.test) if s is not None)
print(json.dumps({"pictures": n, "seconds": seconds, "skipped": len(ds.skipped),
                  "array_mb": sum(s.x.numel() for s in (ds.train, ds.val, ds.test) if s is not None) / 2**20,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

KERAS = """
import json, os, resource, sys, time
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, tensorflow as tf
folder, side = sys.argv[1], int(sys.argv[2])
start = time.perf_counter()
ds = keras.utils.image_dataset_from_directory(folder, image_size=(side, side), batch_size=None, shuffle=False,
                                              verbose=False)
n = 0
for x, y in ds.ignore_errors().batch(256):  # dropping errors before batching drops only the bad pictures
    n += int(y.shape[0])
seconds = time.perf_counter() - start
print(json.dumps({"pictures": n, "seconds": seconds, "skipped": None, "array_mb": n * side * side * 3 / 2**20,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_side(python: str, code: str, folder: Path, side: int) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "CNNLAB_CACHE": cache}
        r = subprocess.run([python, "-c", code, str(folder), str(side)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"bench: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'failed'}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--sides", default="cnnlab,keras")
    ap.add_argument("--keras-python", default=sys.executable, help="a Python with tensorflow and keras")
    args = ap.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"bench: {args.folder}: no such folder")
    files = [f for f in args.folder.rglob("*") if f.is_file()]
    total = 0
    for f in files:  # into the page cache, for both sides alike
        total += len(f.read_bytes())
    print(f"{args.folder}: {len(files)} files, {total / 1e9:.2f} GB, image_size {args.image_size}; "
          f"{len(os.sched_getaffinity(0))} cores")
    codes = {"cnnlab": (sys.executable, CNNLAB), "keras": (args.keras_python, KERAS)}
    best = {}
    for _ in range(args.repeats):
        for side in args.sides.split(","):
            r = run_side(*codes[side], args.folder, args.image_size)
            if side not in best or r["seconds"] < best[side]["seconds"]:
                best[side] = r
    print("| side | pictures | seconds | pictures/s | peak RSS (MB) | final array (MB) |")
    print("|---|---|---|---|---|---|")
    for side, r in best.items():
        print(f"| {side} | {r['pictures']:,} | {r['seconds']:.1f} | {r['pictures'] / r['seconds']:,.0f} | "
              f"{r['peak_rss_mb']:,.0f} | {r['array_mb']:,.0f} |")
    if len(best) == 2:
        c, k = best["cnnlab"], best["keras"]
        print(f"cnnlab / Keras throughput: {(c['pictures'] / c['seconds']) / (k['pictures'] / k['seconds']):.2f}x")


if __name__ == "__main__":
    main()
