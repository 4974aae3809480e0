"""Process settings that make the CPU hot path fast: keep freed memory for reuse.

A PGD step allocates and frees the same few activation-sized buffers (1–5 MB for a batch of
128) over and over. glibc's default ``malloc`` hands buffers of that size back to the operating
system on ``free`` (``munmap``, or trimming the heap top), so the next allocation starts from
fresh pages and every page faults on first touch. On this project's CPU, one PGD-10 attack of
``tiny-cnn`` on 128 images took about 10 800 minor page faults and roughly a third of the
attack's time went there (``benchmarks/README.md``, "Page faults").

``keep_freed_memory()`` asks glibc, through ``mallopt``, to serve allocations up to 32 MiB from
its heap (``M_MMAP_THRESHOLD``) and to keep up to 1 GiB of freed memory at the heap top
(``M_TRIM_THRESHOLD``). Buffers are then reused and the attack runs without page faults. The
price is that the process keeps its peak heap instead of returning it, which a training process
does not need to do. ``irat.train`` and ``irat.evaluate`` call it on the CPU; set
``IRAT_KEEP_FREED_MEMORY=0`` to leave the allocator alone. On other C libraries (macOS, musl) it
does nothing and returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

import torch

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 2**30
ENV = "IRAT_KEEP_FREED_MEMORY"


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process; True if glibc took both."""
    if os.environ.get(ENV, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def _glibc_mallopt():
    """glibc's ``int mallopt(int, int)``, or None where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "gnu_get_libc_version"):  # only glibc has it
            return None
    except (OSError, AttributeError):
        return None
    fn = libc.mallopt
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


def pick_device(name: str) -> torch.device:
    """``auto``: the first GPU when there is one, else the CPU; any other name as ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def configure_cuda(device: torch.device, deterministic: bool = False) -> None:
    """Settings for a training process on a CUDA device (nothing on the CPU).

    By default cuDNN benchmarks its convolution algorithms once per shape and keeps the fastest
    (``cudnn.benchmark``): an adversarial-training epoch runs the same few shapes thousands of
    times. The fastest algorithms may add in a nondeterministic order, so two runs (or a run
    and its resumed copy) agree to about 1e-6, not bit for bit. ``deterministic=True``
    (``train.deterministic``) selects deterministic algorithms instead
    (``torch.use_deterministic_algorithms``, cuBLAS's fixed workspace), at some cost in speed,
    for runs that must resume bit for bit."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
