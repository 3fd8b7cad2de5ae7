"""Make a folder of photo-sized pictures from the CIFAR-10 (JPEG copy): class folders only, every picture a
CIFAR-10 training image enlarged (bicubic) to a random size of 0.3 to 12 megapixels (log-uniform, as a phone
folder mixes thumbnails and full photos) in a random aspect ratio, saved as JPEG. Some are stored turned a
quarter with an EXIF orientation tag that turns them back, some are CMYK JPEGs, some RGBA PNGs, and a few are cut
short (corrupt). For bench/decode.py and issue 17's acceptance run; nothing here is committed data.

    python scripts/make_photo_folder.py OUT --count 20000 [--cifar ../shared/data/cifar10-jpeg.tar.gz]
"""

import argparse
import io
import os
import sys
import tarfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

ASPECTS = [(4, 3), (3, 4), (3, 2), (2, 3), (16, 9), (1, 1)]
SHARES = {"rotated": 0.05, "cmyk": 0.02, "rgba_png": 0.02, "corrupt": 0.005}


def cifar_train_images(path: Path, per_class: int) -> list:
    """(class, JPEG bytes) of the first `per_class` training pictures of each class."""
    out, taken = [], {}
    with tarfile.open(path, "r|*") as tar:
        for m in tar:
            parts = PurePosixPath(m.name).parts
            if m.isfile() and len(parts) >= 3 and parts[-3] == "train" and taken.get(parts[-2], 0) < per_class:
                taken[parts[-2]] = taken.get(parts[-2], 0) + 1
                out.append((parts[-2], tar.extractfile(m).read()))
    return out


def make_one(args) -> tuple:
    i, cls, blob, out = args
    rng = np.random.default_rng(i)
    megapixels = float(np.exp(rng.uniform(np.log(0.3), np.log(12.0))))
    aw, ah = ASPECTS[rng.integers(len(ASPECTS))]
    height = int(round((megapixels * 1e6 * ah / aw) ** 0.5))
    width = int(round(height * aw / ah))
    img = Image.open(io.BytesIO(blob)).convert("RGB").resize((width, height), Image.BICUBIC)
    kind = rng.choice(["plain", *SHARES], p=[1 - sum(SHARES.values()), *SHARES.values()])
    folder = out / cls
    if kind == "rgba_png":
        img = img.convert("RGBA")
        img.putalpha(Image.new("L", img.size, 200))
        img.save(folder / f"{i:05d}.png", optimize=False, compress_level=1)
        return kind, width * height
    buf = io.BytesIO()
    if kind == "rotated":  # stored turned a quarter left; orientation 6 says "turn 90 degrees clockwise to view"
        exif = Image.Exif()
        exif[0x0112] = 6
        img.transpose(Image.ROTATE_90).save(buf, "JPEG", quality=88, exif=exif)
    elif kind == "cmyk":
        img.convert("CMYK").save(buf, "JPEG", quality=88)
    else:
        img.save(buf, "JPEG", quality=88)
    data = buf.getvalue()
    if kind == "corrupt":
        data = data[: len(data) // 3]
    (folder / f"{i:05d}.jpg").write_bytes(data)
    return kind, width * height


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--cifar", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg.tar.gz")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"make_photo_folder: {args.out} is not empty")
    sources = cifar_train_images(args.cifar, -(-args.count // 10))
    sources = sorted(sources, key=lambda t: t[0])
    by_class = {}
    for cls, blob in sources:
        by_class.setdefault(cls, []).append(blob)
    jobs = []
    for i in range(args.count):
        cls = sorted(by_class)[i % len(by_class)]
        jobs.append((i, cls, by_class[cls][i // len(by_class)], args.out))
    for cls in by_class:
        (args.out / cls).mkdir(parents=True, exist_ok=True)
    kinds, pixels = {}, 0
    with ProcessPoolExecutor(args.workers) as pool:
        for n, (kind, px) in enumerate(pool.map(make_one, jobs, chunksize=16), 1):
            kinds[kind] = kinds.get(kind, 0) + 1
            pixels += px
            if n % 1000 == 0:
                print(f"{n}/{args.count}", flush=True)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{args.count} pictures in {len(by_class)} classes, {pixels / args.count / 1e6:.2f} megapixels on average, "
          f"{size / 1e9:.2f} GB: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))


if __name__ == "__main__":
    main()
