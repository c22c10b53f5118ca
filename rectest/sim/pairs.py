"""The pair sums of CD and TP, and the clusters, from a chunk of a Gram matrix in one compiled pass (``pairs.c``)
on the CPU.

Torch sums a chunk's absolute cosines and distances in about eight passes over the ``(R, c, n - a)`` chunk (abs,
masks, ``2 - 2 cos``, clamp, sqrt, sums, a maximum for the cluster edges); the kernel reads it once, and keeps
the sums per row so that the totals do not depend on the chunk size. It also joins the linked pairs in a
union-find forest (:func:`forest`), whose roots, once every chunk is in, are the cluster graph's components:
torch needed the edges gathered and a label propagation, or repeated passes over the whole Gram matrix once the
creators had collapsed into few clusters. Built by :mod:`rectest.sim.native`;
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
    return native.function(
        "pairs", "pair_sums", I64, I64, I64, PTR, FLOAT, PTR, PTR, PTR, PTR, PTR, I64, I64, INT
    )


def available(device: torch.device, dtype: torch.dtype) -> bool:
    """True for float32 CPU chunks when the kernel could be built."""
    return torch.device(device).type == "cpu" and dtype == torch.float32 and _kernel() is not None


def forest(replicas: int, n: int) -> Tensor:
    """``(R, n)`` int32 union-find parents for :func:`row_sums`, every node its own root."""
    return torch.arange(n, dtype=torch.int32).repeat(replicas, 1)


def components(parents: Tensor) -> Tensor:
    """``(R,)`` int64 number of trees (roots) of each replica's ``(R, n)`` forest."""
    return (parents == torch.arange(parents.shape[1], dtype=parents.dtype)).sum(-1)


def row_sums(
    gram: Tensor, cosine: float, parents: Tensor | None = None, offset: int = 0
) -> tuple[Tensor, Tensor]:
    """Each row's sums over the pairs right of the diagonal of a chunk of Gram matrices of unit vectors.

    Args:
        gram: ``(R, c, w)`` float32 CPU: rows ``a .. a + c - 1`` of each replica's Gram matrix and its columns
            ``a .. a + w - 1``, so that row ``i``'s diagonal entry is column ``i`` (``c <= w``).
        cosine: the cluster threshold: pairs with cosine at least this are counted.
        parents: None, or ``(R, n)`` int32 union-find parents (:func:`forest`), updated in place: each counted
            pair ``(a + i, a + k)`` is joined.
        offset: ``a``, the chunk's first row (``a + w <= n``); used with ``parents``.

    Returns:
        ``(3, R, c)`` float64: ``sum_{k > i} sqrt(max(2 - 2 g_ik, 0))``, ``sum_{k > i} |g_ik|`` and
        ``|g_ii|``; ``(R, c)`` int64 ``#{k > i: g_ik >= cosine}``.
    """
    R, c, w = gram.shape
    if c > w:
        raise ValueError(f"row_sums: a chunk of {c} rows needs at least {c} columns, got {w}")
    if parents is not None and not (
        parents.dtype == torch.int32
        and parents.is_contiguous()
        and parents.dim() == 2
        and parents.shape[0] == R
        and 0 <= offset
        and offset + w <= parents.shape[1]
    ):
        raise ValueError(
            f"row_sums: parents {tuple(parents.shape)} {parents.dtype} for a ({R}, {c}, {w}) chunk at row "
            f"{offset}: expected contiguous int32 ({R}, n) with n >= {offset + w}"
        )
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
        None if parents is None else parents.data_ptr(),
        0 if parents is None else parents.shape[1],
        offset,
        native.threads(rows, MIN_ROWS_PER_THREAD),
    )
    return out, linked
