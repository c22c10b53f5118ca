"""Small C kernels for the CPU, compiled at first use and called through ``ctypes``.

Passes that torch runs as several memory-bound operations are written in C (``select.c``: the top-k selection
and the truncated draw; ``toplists.c``: the candidate-list check; ``pairs.c``: the sums over all vector pairs;
``mmr.c``: the MMR lists; ``rho.c``: the diversity-aware fixed point). Each is compiled at first use with the system's C
compiler into a per-user cache (a fraction of a second; rebuilt when its source, the flags or the CPU change)
and split over ``torch.get_num_threads()`` OpenMP threads, on torch's own OpenMP runtime where torch ships
libgomp (its threads would otherwise spin beside the kernel's: a Python thread pool measured 1.4x slower than
one thread). Without a C compiler, with ``RECTEST_NATIVE=0``, or for tensors that are not float32 on the CPU,
the callers use their torch path (on CUDA the torch path is the fast one).

:func:`keep_freed_memory` tunes glibc's allocator for the engine's chunked temporaries (see there); it too is off
with ``RECTEST_NATIVE=0``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import torch

# mallopt parameters (malloc.h): the size from which blocks are mapped anew, the free top kept by the heap
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MAPPED_FROM = 1 << 30  # blocks below 1 GiB come from the heap and are reused once freed
KEEP_FREE = 2**31 - 1  # (mallopt takes an int)
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-shared", "-fPIC", "-fopenmp")


def _cpu_signature() -> str:
    """The CPU's feature flags (``-march=native`` code must not be loaded on another CPU)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return os.uname().machine


@cache
def library(name: str) -> ctypes.CDLL | None:
    """The kernel ``rectest/sim/<name>.c``, built once per source, compiler flags and CPU; None if it cannot be
    built (or ``RECTEST_NATIVE=0``)."""
    if os.environ.get("RECTEST_NATIVE", "1") == "0":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source = Path(__file__).with_name(f"{name}.c")
    headers = sorted(source.parent.glob("*.h"))  # included by the sources: a change must rebuild them
    code = source.read_bytes() + b"".join(h.read_bytes() for h in headers)
    tag = hashlib.sha256(code + " ".join(FLAGS).encode() + _cpu_signature().encode()).hexdigest()[:16]
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rectest"
    target = cache_dir / f"{name}-{tag}.so"
    try:
        if not target.exists():
            cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:  # built aside, then moved in atomically
                built = Path(tmp) / target.name
                subprocess.run(
                    [compiler, *FLAGS, str(source), "-o", str(built)],
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
                os.replace(built, target)
        return ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError):
        return None


I64, PTR, INT, FLOAT = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int, ctypes.c_float  # the kernels' C types


@cache
def function(name: str, symbol: str, *argtypes: type, restype: type | None = None) -> ctypes._CFuncPtr | None:
    """The C function ``symbol`` of the kernel ``name`` (:func:`library`) with its argument and result types;
    None if the kernel cannot be built."""
    lib = library(name)
    if lib is None:
        return None
    fn = getattr(lib, symbol)
    fn.argtypes, fn.restype = list(argtypes), restype
    return fn


def threads(rows: int, min_rows: int) -> int:
    """OpenMP threads for ``rows`` rows: torch's thread count, fewer when a thread would get under ``min_rows``."""
    return max(1, min(torch.get_num_threads(), rows // max(1, min_rows)))


@cache
def keep_freed_memory() -> bool:
    """Let glibc's ``malloc`` reuse the memory of freed tensors instead of handing it back to the system.

    By default glibc maps every block above its threshold (128 KB, rising to at most 32 MB) anew and unmaps it
    when freed, and returns the heap's free top above twice that: each chunk's temporaries then touch fresh
    pages, which the kernel faults in and zeroes one 4 KB page at a time (1.2-1.5 million faults in 60 steps of
    the topk_movielens batch, a fifth of its time). With blocks below ``MAPPED_FROM`` served from the heap and
    its free top kept, a step reuses the last step's pages. The process keeps its peak memory until it exits,
    as a caching allocator does. Process-wide and idempotent; a no-op (False) without glibc or with
    ``RECTEST_NATIVE=0``.

    Returns:
        True if the allocator took both settings.
    """
    if os.environ.get("RECTEST_NATIVE", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MAPPED_FROM)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREE))
