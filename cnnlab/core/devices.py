"""Which device a run computes on, and in which precision.

`device`: auto (a CUDA GPU, else Apple's MPS, else the CPU) | cpu | cuda | cuda:N | mps. A device that is not
there is one line naming what is. Checkpoints hold no device: tensors are saved from the CPU and loaded onto
whatever runs next, so a run trained on a GPU resumes, evaluates and serves on a CPU-only machine.
"""

import ctypes
import os
import platform
import re

import torch

from cnnlab.core.errors import CnnlabError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,3})?", name):
        raise CnnlabError(f"device must be one of {DEVICE_CHOICES}, got {name!r}")
    return name


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve(name: str) -> torch.device:
    """The torch.device `name` means here; a CnnlabError if it is not here."""
    name = check_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise CnnlabError(f"device {name}: {why} (torch {torch.__version__}); use --device cpu or auto")
        index = int(name.partition(":")[2] or torch.cuda.current_device())
        if index >= torch.cuda.device_count():
            raise CnnlabError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                              f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return torch.device("cuda", index)
    if name == "mps" and not mps_available():
        raise CnnlabError("device mps: Apple's Metal backend is not available here; use --device cpu or auto")
    return torch.device(name)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def native_bf16() -> bool:
    """Does this CPU multiply bf16 in hardware (AVX512-BF16 or AMX)? Elsewhere bf16 is emulated and slower."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes
        return False


def choose_precision(kind: str, wanted: str, cuda_capability: tuple | None = None,
                     cpu_bf16: bool = False) -> str:
    """fp32, bf16 or fp16 for a device kind (cpu, cuda, mps) and a config's precision (auto, fp32, bf16, fp16).
    auto: bf16 where the hardware computes it natively (CPUs with AVX512-BF16/AMX, CUDA GPUs from Ampere, compute
    capability 8.0), fp16 with a gradient scaler where only fp16 is fast (Volta and Turing, 7.x), else fp32."""
    if wanted != "auto":
        return wanted
    if kind == "cpu":
        return "bf16" if cpu_bf16 else "fp32"
    if kind == "cuda" and cuda_capability is not None:
        return "bf16" if cuda_capability >= (8, 0) else "fp16" if cuda_capability >= (7, 0) else "fp32"
    return "fp32"  # MPS: fp32 unless asked


def precision(device: torch.device, wanted: str) -> str:
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return choose_precision(device.type, wanted, capability, native_bf16() if device.type == "cpu" else False)


AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def sum_dtype(device: torch.device) -> torch.dtype:
    """The dtype an epoch's loss sum is kept in on `device`: float64, except on MPS, which has none."""
    return torch.float32 if device.type == "mps" else torch.float64


def cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_threads(requested: int = 0, processes: int = 1) -> int:
    """Torch's thread count: `requested`, or this process's share of the cores. Ranks on one machine share its
    cores (two 2-thread processes on 2 cores thrash)."""
    n = requested or max(1, cores() // processes)
    torch.set_num_threads(n)
    return n


def scaler_settings(kind: str, chosen_precision: str) -> dict | None:
    """torch.amp.GradScaler's arguments for training on `kind` in `chosen_precision`, or None for no scaler. On
    CUDA every precision gets one, for its skip of a non-finite step on the device (no host wait): fp16 with
    its dynamic loss scale, bf16 and fp32 with a scale fixed at 1, so their updates are exactly unscaled ones."""
    if kind != "cuda":
        return None
    return {} if chosen_precision == "fp16" else {"init_scale": 1.0, "growth_interval": 2 ** 30}


def make_deterministic(device: torch.device, on: bool):
    """CUDA's bit-exact mode: deterministic kernels, cuDNN without autotuning, cuBLAS with a fixed workspace. It
    costs speed; without it a resumed GPU run matches an uninterrupted one up to the GPU's own nondeterminism
    (atomic adds in some backward kernels). CPUs are deterministic for a given thread count either way."""
    if device.type != "cuda":
        return
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=True)  # an op without a deterministic kernel warns
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on  # autotuned convolutions: fastest, not bit-reproducible


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Has glibc keep freed memory for reuse instead of handing it back to the kernel, so a training step's
    activations land on pages that are already mapped. By default each tensor over its threshold is a fresh mmap
    whose pages fault in one by one as they are first written: cifar-cnn's bf16 step on a 2-core Xeon took 2,300
    page faults and 40.9 ms; with these settings 0-70 faults and 37.4 ms (mnist-cnn: 9.4 -> 8.3 ms). The cost is
    a process whose memory stays at its peak, as with the jemalloc/tcmalloc that PyTorch's CPU guides suggest.
    True when set (Linux with glibc); elsewhere nothing changes."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    # 32 MiB: glibc's largest mmap threshold; 1 GiB of free heap top before any is returned
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
