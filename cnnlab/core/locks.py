"""The run folder's lock: one process trains into a folder at a time, and the OS drops the lock when that
process dies, so a lock never sticks and a free lock means nobody is training there."""

import fcntl
from pathlib import Path

from cnnlab.core.errors import CnnlabError


def lock(run_dir: Path):
    """Exclusive lock on the run folder, held as long as the returned file stays open."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise CnnlabError(f"{run_dir} is being trained by another process; wait for it or use --name") from None
    return f


def is_training(run_dir) -> bool:
    """True while some process holds the run folder's lock. A shared probe: it never blocks, and never takes the
    lock from a trainer starting at the same moment."""
    try:
        with open(Path(run_dir) / ".lock", "r") as f:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False  # nobody holds it: whoever wrote 'running' is gone
    except BlockingIOError:
        return True
    except OSError:  # no lock file, or the folder was deleted or moved: no process is training into it
        return False
