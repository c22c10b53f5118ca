"""The diversity-aware fixed point on CPU from a small compiled kernel (``rho.c``).

The torch path (:meth:`~rectest.sim.policies.BoundPolicy._diversity_aware`) makes, each iteration, two batched
matmuls and about six passes over tiles of ``(R, t, n)`` temporaries. ``rho.c`` iterates one user's row at a
time while it and the replica's creators stay in cache: three passes over the row an iteration. The iteration,
its step and its stopping rule are the same; the floats agree with the torch path to rounding (a few 1e-7: the
sums run in another order and the exp is the kernel's own). Built and loaded by :mod:`rectest.sim.native`;
without it the policies use the torch path (on CUDA the torch path is the fast one).
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from rectest.sim import native
from rectest.sim.native import FLOAT, I64, INT, PTR

MIN_ROWS_PER_THREAD = 8  # at least this many rows for each thread


def _kernel() -> ctypes._CFuncPtr | None:
    """``rho_rows`` of ``rho.c``, or None."""
    return native.function(
        "rho", "rho_rows", I64, I64, I64, I64, PTR, PTR, PTR, PTR, PTR, PTR, I64, FLOAT, INT, restype=INT
    )


def available(device: torch.device, dtype: torch.dtype) -> bool:
    """True if :func:`iterate` handles this device and dtype (float32 on the CPU, and the kernel could be built)."""
    return torch.device(device).type == "cpu" and dtype == torch.float32 and _kernel() is not None


def iterate(
    p: Tensor,
    scores: Tensor,
    creators_t: Tensor,
    beta: Tensor,
    rho: Tensor,
    moving: Tensor,
    iters: int,
    tol: float,
) -> None:
    """Iterate each moving row's probabilities to the diversity-aware fixed point, in place.

    Args:
        p: ``(R, c, n)`` contiguous float32 CPU probabilities (each row the plain softmax over its eligible
            creators; zeros stay zeros), updated in place.
        scores: ``(R, c, n)`` float32 the policy's scores.
        creators_t: ``(R, d, n)`` float32 the policy's creators, transposed.
        beta: ``(R,)`` finite sensitivities; rho: ``(R,)`` diversity weights.
        moving: ``(R, c)`` bool, the rows to iterate (the others keep their ``p``).
        iters: the iteration cap; tol: a row stops once no probability moves by ``tol``.
    """
    R, c, n = p.shape
    if not p.is_contiguous() or p.dtype != torch.float32:
        raise ValueError("rho.iterate: p must be contiguous float32")
    d = creators_t.shape[1]
    s = scores.to(torch.float32).contiguous()
    vt = creators_t.to(torch.float32).contiguous()
    b = beta.reshape(R).to(torch.float32).contiguous()
    r = rho.reshape(R).to(torch.float32).contiguous()
    flags = moving.reshape(R * c).to(torch.uint8).contiguous()
    code = _kernel()(
        R * c,
        c,
        n,
        d,
        p.data_ptr(),
        s.data_ptr(),
        vt.data_ptr(),
        b.data_ptr(),
        r.data_ptr(),
        flags.data_ptr(),
        iters,
        tol,
        native.threads(R * c, MIN_ROWS_PER_THREAD),
    )
    if code:
        raise MemoryError("rho.iterate: out of memory for a row buffer")
