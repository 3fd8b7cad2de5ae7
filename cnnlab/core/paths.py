"""The one rule for paths a user names: cnnlab reads regular files (and walks folders), nothing else.

A FIFO, a device or a socket named as an image, a --data set, a config or a checkpoint would block the read
forever (a FIFO waits for a writer) or never end (/dev/zero), so each is refused by name before it is opened.
Inside a folder such entries are skipped, as every folder walk keeps only `is_file()` entries.
"""

import os
import stat
from pathlib import Path

from cnnlab.core.errors import CnnlabError

KINDS = [(stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device")]


def kind(mode: int) -> str:
    return next((name for test, name in KINDS if test(mode)), "not a regular file")


def regular_file(path, what: str = "file") -> Path:
    """`path`, once it is known to be a regular file (after symlinks); else one line saying what it is."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CnnlabError(f"{what} {path}: no such file") from None
    except OSError as e:
        raise CnnlabError(f"cannot read {what} {path}: {e.strerror}") from None
    if stat.S_ISDIR(mode):
        raise CnnlabError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise CnnlabError(f"{what} {path} is {kind(mode)}; cnnlab reads regular files only")
    return path


def file_or_folder(path, what: str = "path") -> Path:
    """`path` if it is a folder or a regular file."""
    path = Path(path)
    return path if path.is_dir() else regular_file(path, what)


def read_bytes(path, what: str = "file") -> bytes:
    """The bytes of a regular file. Opened without blocking and checked on the open file, so a FIFO swapped in
    after the check cannot hang the read either."""
    regular_file(path, what)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CnnlabError(f"{what} {path} is {kind(os.fstat(fd).st_mode)}; cnnlab reads regular files only")
        os.set_blocking(fd, True)
        return f.read()


def read_text(path, what: str = "file") -> str:
    return read_bytes(path, what).decode()
