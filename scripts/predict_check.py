"""Does `cnnlab predict` on picture files agree with the in-memory evaluation of the same test images?

For each run given: 20 test images of the run's own data set (evenly spaced through it) are written as PNG at their
native size, and the
same 20 upscaled to 256x256 (bicubic) and saved as JPEG (quality 90, RGB). `cnnlab predict --json` classifies
both folders, exactly as a user would, and its top-1 is compared with the model's answer on the in-memory
uint8 tensors.

    python scripts/predict_check.py runs/mnist-cnn runs/cifar-cnn-cifar10-jpeg [--n 20]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

from cnnlab.core import config
from cnnlab.data.splits import prepare_data
from cnnlab.data.transforms import to_input
from cnnlab.models import specs
from cnnlab.serving import predict


def in_memory_top1(run: Path, x: torch.Tensor) -> tuple:
    """(top-1 class indices, their probabilities, the gap to the second class) on the in-memory uint8 images."""
    model, _ = predict.load_model(run)
    with torch.inference_mode():
        top = torch.softmax(model(to_input(x, specs.uses_conv(model))), 1).topk(2, 1)
    return top.indices[:, 0].tolist(), top.values[:, 0].tolist(), (top.values[:, 0] - top.values[:, 1]).tolist()


def write_images(x: torch.Tensor, folder: Path, size: int | None):
    folder.mkdir(parents=True)
    for i, img in enumerate(x):
        arr = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
        pic = Image.fromarray(arr)
        if size is None:
            pic.save(folder / f"{i:04d}.png")
        else:
            pic.resize((size, size), Image.BICUBIC).convert("RGB").save(folder / f"{i:04d}.jpg", quality=90)


def predicted(run: Path, folder: Path, classes: list) -> list:
    out = subprocess.run([sys.executable, "-m", "cnnlab", "predict", str(run), str(folder), "--json"],
                         capture_output=True, text=True, check=True).stdout
    return [classes.index(r["top"][0]["class"]) for r in json.loads(out)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    failed = False
    for run in args.runs:
        state_cfg = config.load_toml(str(run / "config.toml"))
        cfg = config.from_dict(state_cfg)
        ds, _, _ = prepare_data(cfg)
        pick = torch.arange(args.n) * (len(ds.test) // args.n)  # spread over the set: folders are sorted by class
        x, y = ds.test.x[pick], ds.test.y[pick].tolist()
        want, confidence, gap = in_memory_top1(run, x)
        with tempfile.TemporaryDirectory() as tmp:
            native, big = Path(tmp) / "native", Path(tmp) / "upscaled"
            write_images(x, native, None)
            write_images(x, big, 256)
            got_native, got_big = predicted(run, native, ds.classes), predicted(run, big, ds.classes)
        same_native = sum(a == b for a, b in zip(got_native, want))
        same_big = sum(a == b for a, b in zip(got_big, want))
        right = sum(a == b for a, b in zip(want, y))
        print(f"{run.name} ({ds.name}): in-memory top-1 right on {right}/{len(y)}; predict agrees with it on "
              f"{same_native}/{len(y)} native PNGs and {same_big}/{len(y)} 256x256 JPEGs")
        if same_native < len(y):
            failed = True
        for i, (a, b, c) in enumerate(zip(want, got_native, got_big)):
            if not a == b == c:
                print(f"  image {i} (label {ds.classes[y[i]]}): in memory {ds.classes[a]} ({confidence[i]:.2f}, "
                      f"{gap[i]:.2f} above the next class), PNG {ds.classes[b]}, upscaled JPEG {ds.classes[c]}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
