"""Exact top-k selection from per-user candidate lists carried across steps.

``torch.topk`` of ``k`` out of ``n`` scores costs several ``exp`` passes over the row on CPU (top-11 of 1,682
scores: 2x, top-101: 8x). Between two steps each vector moves a little, so the top ``k`` of
a user at step ``t + 1`` almost always lies in a slightly longer list of that user's best creators at step
``t``. A user's list is checked against the current scores at every step:

1. gather the list's scores and take their top ``k`` (a short ``topk``);
2. the largest score *outside* the list (the list's entries masked, one ``amax`` over the row);
3. the list's ``k``-th score at least every outside score: the full row's top ``k`` values are the list's
   (same float scores, and the same creators wherever a score is above the ``k``-th: an outside creator can
   only tie with the last one, which the draws that follow treat as a tie of the full row; they are those of a
   full-row ``topk``);
4. otherwise (a creator from outside could enter) the user's list is rebuilt from its full row.

No drift bound is assumed: the check uses the current scores, so any list (stale, or the initial
``0 .. L-1``) gives the exact result, and the lists are a cache that checkpoints need not hold.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from rectest.sim import native
from rectest.sim.native import I64, INT, PTR

# A list holds the k wanted entries and as many again (at least LIST_SLACK more): the margin lets a user's
# ranking shift for several steps before its list must be rebuilt.
LIST_SLACK = 8
# Lists are used only while they are at most this fraction of a row: beyond it the short topk, the gathers
# and the rebuilds cost about as much as a topk of the full row (ml-100k shape, random vectors, 8 replicas:
# top-100 (lists of 202) 146 against 219 ms a step, top-256 (lists of 514) 298 against 309 ms).
MAX_LIST_FRACTION = 1 / 3


def list_length(k: int, n: int) -> int | None:
    """The candidate-list length for the top ``k`` of ``n`` creators, or None when lists do not pay."""
    length = k + max(k, LIST_SLACK)
    return length if length <= n * MAX_LIST_FRACTION else None


def initial_lists(replicas: int, users: int, length: int, device: torch.device) -> Tensor:
    """``(R, m, L)`` int32 lists ``0 .. L-1`` for every user (rebuilt at their first check)."""
    row = torch.arange(length, dtype=torch.int32, device=device)
    return row.expand(replicas, users, length).contiguous()


def top_entries(scores: Tensor, k: int, lists: Tensor | None) -> tuple[Tensor, Tensor]:
    """The ``k`` largest scores of each row and their indices, sorted descending: ``scores.topk(k)``.

    The float values are those of ``scores.topk(k, -1)``, and so are the creators above the ``k``-th value
    (creators with equal scores may be exchanged, as ``torch.topk`` may exchange them).

    Args:
        scores: ``(R, c, n)`` scores; restored bit for bit before returning.
        k: entries wanted, ``k <= L``.
        lists: ``(R, c, L)`` int32 candidate indices, distinct in each row, or None (a full-row topk).
            Rows that fail the check are rebuilt in place with the row's top ``L``.

    Returns:
        ``(R, c, k)`` values and ``(R, c, k)`` int64 indices.
    """
    if lists is None:
        return scores.topk(k, dim=-1)
    if _available(scores, lists):  # steps 1 and 2 in one compiled pass over each row (toplists.c)
        vals, top, outside = _check_native(scores, lists, k)
    else:
        idx = lists.long()  # (R, c, L)
        cand = scores.gather(-1, idx)  # (R, c, L)  1. the list's scores
        vals, pos = cand.topk(k, dim=-1)  # (R, c, k)
        scores.scatter_(-1, idx, torch.full_like(cand, -torch.inf))  # 2. the list masked out ...
        outside = scores.amax(-1)  # (R, c)  ... the best creator outside it
        scores.scatter_(-1, idx, cand)  # (restored)
        top = idx.gather(-1, pos)  # (R, c, k)
    stale = ~(vals[..., -1] >= outside)  # (R, c)  3. an outside creator could enter the top k (or NaN)
    if bool(stale.any()):  # 4. those users' lists rebuilt from their full rows
        r, c = stale.nonzero(as_tuple=True)  # (s,), (s,)
        fresh_vals, fresh = scores[r, c].topk(lists.shape[-1], dim=-1)  # (s, L)
        lists[r, c] = fresh.to(lists.dtype)
        vals[r, c] = fresh_vals[:, :k]
        top[r, c] = fresh[:, :k]
    return vals, top


MIN_ROWS_PER_THREAD = 64


def _kernel() -> ctypes._CFuncPtr | None:
    """``list_rows`` of ``toplists.c``, or None."""
    return native.function(
        "toplists", "list_rows", I64, I64, PTR, PTR, I64, I64, PTR, PTR, PTR, INT, restype=INT
    )


def _available(scores: Tensor, lists: Tensor) -> bool:
    """The compiled check applies: float32 CPU scores, int32 lists, the kernel built."""
    return (
        scores.device.type == "cpu"
        and scores.dtype == torch.float32
        and lists.dtype == torch.int32
        and _kernel() is not None
    )


def _check_native(scores: Tensor, lists: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Steps 1 and 2 of :func:`top_entries` from ``toplists.c``: the ``(R, c, k)`` top values of each list
    (descending; equal values in list order) and their ``(R, c, k)`` int64 creators, and the ``(R, c)`` largest
    score outside the list (NaN if the row holds a NaN)."""
    lead, n, length = scores.shape[:-1], scores.shape[-1], lists.shape[-1]
    if not 1 <= k <= length:
        raise ValueError(f"top_entries: k={k} entries from lists of {length}")
    flat = scores.reshape(-1, n).contiguous()  # (B, n)
    cand = lists.reshape(-1, length).contiguous()  # (B, L)
    rows = flat.shape[0]
    vals = torch.empty(rows, k, dtype=torch.float32)
    top = torch.empty(rows, k, dtype=torch.int64)
    outside = torch.empty(rows, dtype=torch.float32)
    code = _kernel()(
        rows,
        n,
        flat.data_ptr(),
        cand.data_ptr(),
        length,
        k,
        vals.data_ptr(),
        top.data_ptr(),
        outside.data_ptr(),
        native.threads(rows, MIN_ROWS_PER_THREAD),
    )
    if code:
        raise MemoryError("top_entries: out of memory for a row buffer")
    return vals.view(*lead, k), top.view(*lead, k), outside.view(lead)
