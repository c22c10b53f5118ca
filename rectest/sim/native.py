"""Small C kernels for the CPU, compiled at first use and called through ``ctypes``.

Two passes that torch runs as several memory-bound operations are written in C (``select.c``: the top-k
selection; ``pairs.c``: the sums over all vector pairs). Each is compiled at first use with the system's C
compiler into a per-user cache (a fraction of a second; rebuilt when its source, the flags or the CPU change)
and split over ``torch.get_num_threads()`` OpenMP threads, on torch's own OpenMP runtime where torch ships
libgomp (its threads would otherwise spin beside the kernel's: a Python thread pool measured 1.4x slower than
one thread). Without a C compiler, with ``RECTEST_NATIVE=0``, or for tensors that are not float32 on the CPU,
the callers use their torch path (on CUDA the torch path is the fast one).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import torch

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
    code = source.read_bytes()
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



def threads(rows: int, min_rows: int) -> int:
    """OpenMP threads for ``rows`` rows: torch's thread count, fewer when a thread would get under ``min_rows``."""
    return max(1, min(torch.get_num_threads(), rows // max(1, min_rows)))
