"""The files of a folder, .zip or .tar(.gz/.xz) archive, read the same way: listed, read one by one (a folder
or zip directly, a tar as a stream in its own order, never decompressed twice per member), and handed to a pool
of threads a bounded window at a time, so memory holds a few files per core, not the archive."""

import tarfile
import zipfile
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, as_completed, wait
from pathlib import Path

from cnnlab.core import devices
from cnnlab.core.errors import CnnlabError
from cnnlab.data.formats import ARCHIVE_ERRORS, read_limited

MAX_PICTURE_BYTES = 64 << 20  # no photo file is near 64 MiB; a bigger one is skipped, not read
WINDOW = 4  # files in flight per thread: enough to keep every core decoding while the next file is read


def threads_for(threads: int = 0) -> int:
    """`threads`, or one per core this process may use."""
    return threads or devices.cores()


class Source:
    def __init__(self, path: Path):
        self.path = Path(path)
        if self.path.is_dir():
            self.kind = "folder"
        elif zipfile.is_zipfile(self.path):
            self.kind = "zip"
        elif tarfile.is_tarfile(self.path):
            self.kind = "tar"
        else:
            raise CnnlabError(f"{self.path}: not a folder, .zip or .tar(.gz) archive")
        self._small = {}  # a tar's label files, kept while listing (a stream cannot go back for them)

    def names(self) -> list:
        """Every regular file's path inside, with / separators."""
        try:
            if self.kind == "folder":
                return sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file())
            if self.kind == "zip":
                with zipfile.ZipFile(self.path) as z:
                    return [i.filename for i in z.infolist() if not i.is_dir()]
            out = []
            with tarfile.open(self.path, "r|*") as tar:
                for m in tar:
                    if m.isfile():
                        out.append(m.name)
                        if m.name.lower().endswith((".csv", ".tsv")):
                            self._small[m.name] = read_limited(tar.extractfile(m), 16 << 20, m.name)
            return out
        except ARCHIVE_ERRORS as e:
            raise CnnlabError(f"{self.path}: damaged or unreadable ({type(e).__name__}: {e})") from None

    def first_names(self, n: int) -> list:
        """The first `n` files' paths, reading no further into the archive than they are."""
        if self.kind != "tar":
            return self.names()[:n]
        out = []
        try:
            with tarfile.open(self.path, "r|*") as tar:
                for m in tar:
                    if m.isfile():
                        out.append(m.name)
                        if len(out) == n:
                            break
        except ARCHIVE_ERRORS:
            pass  # the full listing reports the damage
        return out

    def read(self, name: str, limit: int) -> bytes:
        """One file's first `limit` bytes (all of it if smaller); a folder or zip only, or a tar's label file."""
        try:
            if self.kind == "folder":
                with open(self.path / name, "rb") as f:
                    return f.read(limit)
            if self.kind == "zip":
                with zipfile.ZipFile(self.path) as z, z.open(name) as f:
                    return f.read(limit)
            return self._small[name][:limit]
        except ARCHIVE_ERRORS as e:
            raise CnnlabError(f"{name}: cannot read ({type(e).__name__}: {e})") from None

    def map_blobs(self, wanted: set, limit: int, fn, threads: int = 0):
        """fn(name, read) for every wanted file, on a pool of threads; `read()` gives its bytes (up to `limit`,
        or CnnlabError when it is larger). Yields fn's results as they finish, in any order, a bounded window at
        a time: waiting for the oldest instead left a core idle behind every slow picture (a 12-megapixel PNG)."""
        workers = threads_for(threads)
        pending = set()
        with ThreadPoolExecutor(workers) as pool:
            for name, read in self._readers(wanted, limit):
                if len(pending) >= WINDOW * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (f.result() for f in done)
                pending.add(pool.submit(fn, name, read))
            for f in as_completed(pending):
                yield f.result()

    def _readers(self, wanted, limit):
        """(name, read) pairs: a folder's files are read inside the worker (the disk works in parallel too); an
        archive's are read here, in the archive's order, a tar's whole (a stream cannot come back for more)."""
        try:
            if self.kind == "folder":
                for name in sorted(wanted):
                    yield name, (lambda name=name: _bounded(self.read(name, limit + 1), name, limit))
            elif self.kind == "zip":
                with zipfile.ZipFile(self.path) as z:
                    for info in z.infolist():
                        if info.filename in wanted:
                            with z.open(info) as f:
                                blob = f.read(limit + 1)
                            yield info.filename, (lambda blob=blob, name=info.filename: _bounded(blob, name, limit))
            else:
                with tarfile.open(self.path, "r|*") as tar:
                    for m in tar:
                        if m.isfile() and m.name in wanted:
                            blob = tar.extractfile(m).read(MAX_PICTURE_BYTES + 1)
                            yield m.name, (lambda blob=blob, name=m.name: _bounded(blob, name, MAX_PICTURE_BYTES))
        except ARCHIVE_ERRORS as e:
            raise CnnlabError(f"{self.path}: damaged or unreadable ({type(e).__name__}: {e})") from None


def _bounded(blob: bytes, name: str, limit: int) -> bytes:
    """The first `limit` bytes; a whole picture read (limit MAX_PICTURE_BYTES) that is larger is refused."""
    if len(blob) > limit >= MAX_PICTURE_BYTES:
        raise CnnlabError(f"{name}: larger than {limit >> 20} MiB; not read as a picture")
    return blob[:limit]
