"""Data-parallel training on torch.distributed: one process per rank, launched by torchrun.

`torchrun --nproc-per-node N -m cnnlab train ...` (or `cnnlab train --procs N`, which runs exactly that) sets
RANK and WORLD_SIZE; cnnlab then joins the process group (nccl when training on CUDA GPUs, one GPU per rank,
cuda:LOCAL_RANK; gloo on CPUs), wraps the model in DistributedDataParallel, and gives each rank its slice of
every global batch. The global batch is the
batch_size the user asked for. Only rank 0 writes checkpoints, logs and the registry; every rank reads the
same last.pt to resume.
"""

import os
import subprocess
import sys
import tempfile

import torch
import torch.distributed as dist

from cnnlab.core.errors import CnnlabError


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", rank()))


def init(device_type: str = "cpu"):
    """Join the process group once, when launched with more than one rank: nccl for CUDA tensors, else gloo."""
    if world_size() > 1 and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")


def device(chosen: torch.device) -> torch.device:
    """The device this rank computes on: with several ranks on CUDA, each its own GPU, cuda:LOCAL_RANK."""
    if world_size() > 1 and chosen.type == "cuda":
        if local_rank() >= torch.cuda.device_count():
            raise CnnlabError(f"rank {rank()} wants cuda:{local_rank()}, but this machine has "
                              f"{torch.cuda.device_count()} GPU(s): use --procs {torch.cuda.device_count()} or fewer")
        return torch.device("cuda", local_rank())
    return chosen


def finish():
    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(*tensors: torch.Tensor):
    """Sum each tensor over the ranks, in place (a no-op in a single process)."""
    if world_size() > 1:
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def barrier():
    if world_size() > 1:
        dist.barrier()


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's part of a global batch (every world_size-th sample, starting at its rank)."""
    return indices[rank()::world_size()]


def launch(argv: list, procs: int) -> int:
    """`cnnlab train --procs N ...`: run torchrun on this machine with the same arguments and report how it
    ended in one line. Rank 0's output passes through; torchrun's own report goes to a log file in the temporary folder, which
    the error names."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
           "-m", "cnnlab", *_without_option(argv, "--procs")]  # each rank is one process
    child = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    _, err = child.communicate()
    if child.returncode == 0:
        return 0
    ours = [line for line in err.splitlines() if line.startswith("cnnlab: error:")]
    if ours:
        raise CnnlabError(ours[0].removeprefix("cnnlab: error: "))
    with tempfile.NamedTemporaryFile("w", prefix="cnnlab-torchrun-", suffix=".log", delete=False) as log:
        log.write(err)  # torchrun's full report, for whoever needs more than one line
    raise CnnlabError(f"a training process died ({_cause(err) or f'torchrun exit status {child.returncode}'}); "
                      f"every finished epoch is saved: run the same command to resume (torchrun's log: {log.name})")


def _without_option(argv: list, option: str) -> list:
    """argv less `--option VALUE` / `--option=VALUE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


def _cause(torchrun_log: str) -> str:
    """'rank 1 killed by SIGKILL' from torchrun's report ('failed (exitcode: -9) local_rank: 1 ...')."""
    import re
    import signal
    m = re.search(r"exitcode: (-?\d+)\) local_rank: (\d+)", torchrun_log)
    if not m:
        return ""
    code, rank = int(m.group(1)), m.group(2)
    if code < 0:
        try:
            return f"rank {rank} killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"rank {rank} killed by signal {-code}"
    return f"rank {rank} exited with status {code}"
