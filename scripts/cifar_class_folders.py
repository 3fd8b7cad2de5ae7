"""The CIFAR-10 (JPEG copy)'s 60,000 pictures, unchanged, as class folders alone (<class>/train-NNNNN.jpg and
<class>/test-NNNNN.jpg): the layout a user's own download has, to check that cnnlab trains the same on it as
on the copy's own train/ and test/ folders (issue 17's second acceptance point).

    python scripts/cifar_class_folders.py OUT [--cifar ../shared/data/cifar10-jpeg.tar.gz]
"""

import argparse
import sys
import tarfile
from pathlib import Path, PurePosixPath


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--cifar", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg.tar.gz")
    args = ap.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"cifar_class_folders: {args.out} is not empty")
    n = 0
    with tarfile.open(args.cifar, "r|*") as tar:
        for m in tar:
            parts = PurePosixPath(m.name).parts
            if m.isfile() and len(parts) >= 3 and parts[-3] in ("train", "test"):
                folder = args.out / parts[-2]
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{parts[-3]}-{parts[-1]}").write_bytes(tar.extractfile(m).read())
                n += 1
    print(f"{n} pictures in {len(list(args.out.iterdir()))} class folders under {args.out}")


if __name__ == "__main__":
    main()
