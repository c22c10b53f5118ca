"""The pair sums of CD and TP from a chunk of a Gram matrix in one compiled pass (``pairs.c``) on the CPU.

Torch sums a chunk's absolute cosines and distances in about eight passes over the ``(R, c, n - a)`` chunk (abs,
masks, ``2 - 2 cos``, clamp, sqrt, sums, a maximum for the cluster edges); the kernel reads it once, and keeps
the sums per row so that the totals do not depend on the chunk size. Built by :mod:`rectest.sim.native`;
without it :func:`available` is False and :mod:`rectest.sim.measures` keeps its torch path.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from rectest.sim import native
from rectest.sim.native import FLOAT, I64, INT, PTR

MIN_ROWS_PER_THREAD = 16


def _kernel() -> ctypes._CFuncPtr | None:
    """``pair_sums`` of ``pairs.c``, or None."""
    return native.function("pairs", "pair_sums", I64, I64, I64, PTR, FLOAT, PTR, PTR, PTR, PTR, INT)


def available(device: torch.device, dtype: torch.dtype) -> bool:
    """True for float32 CPU chunks when the kernel could be built."""
    return torch.device(device).type == "cpu" and dtype == torch.float32 and _kernel() is not None


def row_sums(gram: Tensor, cosine: float) -> tuple[Tensor, Tensor]:
    """Each row's sums over the pairs right of the diagonal of a chunk of Gram matrices of unit vectors.

    Args:
        gram: ``(R, c, w)`` float32 CPU: rows ``a .. a + c - 1`` of each replica's Gram matrix and its columns
            ``a .. a + w - 1``, so that row ``i``'s diagonal entry is column ``i`` (``c <= w``).
        cosine: the cluster threshold: pairs with cosine at least this are counted.

    Returns:
        ``(3, R, c)`` float64: ``sum_{k > i} sqrt(max(2 - 2 g_ik, 0))``, ``sum_{k > i} |g_ik|`` and
        ``|g_ii|``; ``(R, c)`` int64 ``#{k > i: g_ik >= cosine}``.
    """
    R, c, w = gram.shape
    if c > w:
        raise ValueError(f"row_sums: a chunk of {c} rows needs at least {c} columns, got {w}")
    flat = gram.contiguous()
    out = torch.empty(3, R, c, dtype=torch.float64)
    linked = torch.empty(R, c, dtype=torch.int64)
    kernel = _kernel()
    if kernel is None:
        raise RuntimeError("row_sums: the kernel is not available (check available() first)")
    rows = R * c
    kernel(
        R,
        c,
        w,
        flat.data_ptr(),
        cosine,
        out[0].data_ptr(),
        out[1].data_ptr(),
        out[2].data_ptr(),
        linked.data_ptr(),
        native.threads(rows, MIN_ROWS_PER_THREAD),
    )
    return out, linked
