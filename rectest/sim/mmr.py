"""MMR re-ranking lists on CPU from a small compiled kernel (``mmr.c``).

The torch path (:meth:`~rectest.sim.policies.BoundPolicy._mmr_list`) makes ``k`` score-sized matmuls and several
passes over ``(R, c, n)`` temporaries per chunk of users. ``mmr.c`` makes the same greedy list per user with one
short pass over the replica's transposed creators a pick, shared by up to 8 users of the replica and held in
cache: the same lists up to ties within a rounding (the similarities are summed in another order than torch's
matmul). Built and loaded by :mod:`rectest.sim.native`; without it the policies use the torch path (on CUDA the
torch path is the fast one).
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from rectest.sim import native
from rectest.sim.native import I64, INT, PTR

MIN_ROWS_PER_THREAD = 16  # at least this many rows for each thread


def _kernel() -> ctypes._CFuncPtr | None:
    """``mmr_rows`` of ``mmr.c``, or None."""
    return native.function(
        "mmr", "mmr_rows", I64, I64, I64, I64, PTR, PTR, PTR, PTR, I64, PTR, INT, restype=INT
    )


def available(device: torch.device, dtype: torch.dtype) -> bool:
    """True if :func:`lists` handles this device and dtype (float32 on the CPU, and the kernel could be built)."""
    return torch.device(device).type == "cpu" and dtype == torch.float32 and _kernel() is not None


def lists(scores: Tensor, creators_t: Tensor, k: Tensor, lam: Tensor) -> Tensor:
    """Each user's greedy MMR list: first the largest score, then ``k - 1`` times the creator maximising
    ``lam s_i - (1 - lam) max_{picked l} <v_i, v_l>`` among those not picked (the first of equal values).

    Args:
        scores: ``(R, c, n)`` float32 CPU scores.
        creators_t: ``(R, d, n)`` float32 the creator vectors the similarities are taken between, transposed.
        k: ``(R, 1, 1)`` integer list lengths in ``[1, n]``.
        lam: ``(R, 1, 1)`` MMR weights in ``[0, 1]``.

    Returns:
        ``(R, c, kmax)`` int64 each list in index order, padded with its last creator past its ``k``.
    """
    R, c, n = scores.shape
    d = creators_t.shape[1]
    kmax = int(k.max())
    flat = scores.contiguous()
    vt = creators_t.to(torch.float32).contiguous()
    ranks = k.reshape(R).to(torch.int64).contiguous()
    weights = lam.reshape(R).to(torch.float32).contiguous()
    out = torch.empty(R * c, kmax, dtype=torch.int64)
    code = _kernel()(
        R * c,
        c,
        n,
        d,
        flat.data_ptr(),
        vt.data_ptr(),
        ranks.data_ptr(),
        weights.data_ptr(),
        kmax,
        out.data_ptr(),
        native.threads(R * c, MIN_ROWS_PER_THREAD),
    )
    if code:
        raise MemoryError("mmr.lists: out of memory for a row buffer")
    return out.view(R, c, kmax)
