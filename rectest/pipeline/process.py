"""Process-wide state, set at the edge: torch's CPU threads and the torch.distributed group.

The pipeline itself never changes them. The entry point (``python -m rectest.train``) calls these; a
notebook or script that calls :func:`rectest.pipeline.run` calls :func:`use_threads` once, so it runs at
the command line's speed::

    from rectest.pipeline import prepare, execute, use_threads
    ready = prepare(spec)
    use_threads(None, ready.size)   # or use_threads(1)
    execute(ready, Path("outputs/mine"))
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from rectest.errors import ConfigError

SMALL_PROBLEM = 1 << 22  # scores per step (replicas x users x creators) below which one CPU thread is fastest


def use_threads(threads: int | None = None, size: int | None = None) -> int:
    """Pin torch's CPU threads and return the number in use.

    Args:
        threads: the number to use (``sim.threads``); None chooses by ``size``.
        size: scores one simulation step computes; below :data:`SMALL_PROBLEM` one thread is used (for
            small tensors, synchronising threads costs more than the work: on a busy 2-core machine a
            100-user simulation ran 100x slower with 2 threads than with 1); above it torch's default.

    Raises:
        ConfigError: ``threads < 1``.
    """
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"sim.threads={threads}: expected a positive number of threads (or null)")
        torch.set_num_threads(threads)
    elif size is not None and size < SMALL_PROBLEM:
        torch.set_num_threads(1)
    return torch.get_num_threads()


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher setting ``WORLD_SIZE``) started several processes."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def join_processes(cuda: bool) -> None:
    """Join the process group torchrun describes (``nccl`` on CUDA, each process on its local GPU;
    ``gloo`` otherwise). Nothing when not launched by torchrun or already joined."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    if cuda:
        if not torch.cuda.is_available():
            raise ConfigError("sim.device=cuda: CUDA is not available on this machine (use auto or cpu)")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0") or 0))
    dist.init_process_group(backend="nccl" if cuda else "gloo")


def leave_processes() -> None:
    """Leave the process group (if joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
