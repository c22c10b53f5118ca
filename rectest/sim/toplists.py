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

:func:`draw` then makes the policy's inverse-CDF draw from each row's top entries in one compiled pass a row
(``draw_rows`` in ``toplists.c``): the same floats as the dozen torch operations it replaces (tested bit for
bit), which cost more than the list check itself at the topk experiment's chunk sizes.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from rectest.sim import native, select
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
        fresh_vals, fresh = _rebuilt(
            scores, r * scores.shape[1] + c, lists.shape[-1], outside[r, c]
        )  # (s, L)
        lists[r, c] = fresh.to(lists.dtype)
        vals[r, c] = fresh_vals[:, :k]
        top[r, c] = fresh[:, :k]
    return vals, top


def _rebuilt(scores: Tensor, at: Tensor, length: int, outside: Tensor) -> tuple[Tensor, Tensor]:
    """The ``length`` best scores of some rows and their creators, sorted descending: ``rows.topk(length)`` but
    for the order of equal scores (in creator order here).

    On the CPU in float32 the compiled selection (:func:`rectest.sim.select.select`: about 1.5 us a row of 1,682
    scores, against 5 us for ``torch.topk``) lists each row's top ``length`` in creator order, reading the rows
    where they lie, and a short stable sort orders them. Rows holding a NaN (``outside`` is NaN, or fewer than
    ``length`` scores reach the ``length``-th: a NaN in the list), or whose ``length``-th score ties with the
    next (the first ``length`` at least it in creator order may then leave out a larger score further on), take
    ``torch.topk``.

    Args:
        scores: ``(..., n)`` scores.
        at: ``(s,)`` int64 row numbers into ``scores.reshape(-1, n)``.
        length: entries wanted, ``<= n``.
        outside: ``(s,)`` the list check's largest score outside each row's list (NaN: the row holds a NaN).

    Returns:
        ``(s, length)`` values and ``(s, length)`` int64 creators.
    """
    flat = scores.reshape(-1, scores.shape[-1])  # (B, n)
    if not select.available(scores.device, scores.dtype):
        return flat[at].topk(length, dim=-1)
    _, count, best = select.select(scores, torch.tensor(length), length, at=at)  # (s,), (s, L) creator order
    vals, order = flat[at.unsqueeze(-1), best].sort(dim=-1, descending=True, stable=True)  # (s, L)
    idx = best.gather(-1, order)  # (s, L)
    odd = torch.isnan(outside) | (count != length)  # (s,) (fewer than L at least the L-th: a NaN in the row)
    if bool(odd.any()):
        vals[odd], idx[odd] = flat[at[odd]].topk(length, dim=-1)
    return vals, idx


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


def _draw_kernel() -> ctypes._CFuncPtr | None:
    """``draw_rows`` of ``toplists.c``, or None."""
    return native.function(
        "toplists",
        "draw_rows",
        I64,
        I64,
        PTR,
        PTR,
        PTR,
        PTR,
        INT,
        PTR,
        PTR,
        PTR,
        PTR,
        PTR,
        PTR,
        PTR,
        INT,
        restype=INT,
    )


def draw_available(weights: Tensor) -> bool:
    """The compiled draw applies: float32 CPU weights, the kernel built."""
    return weights.device.type == "cpu" and weights.dtype == torch.float32 and _draw_kernel() is not None


def draw(
    weights: Tensor, creators: Tensor, k: Tensor, uniforms: Tensor, vals: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """The inverse-CDF draw from each user's best creators, in one compiled pass a row (``draw_rows``).

    The operations of the torch path of :meth:`~rectest.sim.policies.BoundPolicy.draw_top_k`, with the same
    floats: weights past a replica's ``k`` multiplied by 0; with ``vals``, the entries (given by score) put in
    creator order; the cumulative sum as torch's CPU ``cumsum`` rounds it (a double accumulator, rounded to
    float at every entry); ``u * total``; the first entry whose cumulative sum exceeds it (the last if none).

    Args:
        weights: ``(R, c, m)`` float32 ``exp(beta s)`` of the entries.
        creators: ``(R, c, m)`` int64 the entries' creators (distinct in a row).
        k: ``(R, 1, 1)`` int64 each replica's k (``<= m``).
        uniforms: ``(R, c)`` draws in ``[0, 1)`` (rounded to float32 first, as the torch path does).
        vals: None (the entries are in creator order already), or ``(R, c, m + 1)`` the entries' scores in
            descending order and the next one (the lists' ``top_entries``).

    Returns:
        ``chosen`` ``(R, c)`` int64; ``weights`` and ``creators`` ``(R, c, m)`` in creator order, the weights
        past ``k`` zero; ``total`` ``(R, c, 1)``; with ``vals``, the ``(R, c, 1)`` k-th score and the ``(R, c)``
        ties of the k-th score with the next (else None, None).
    """
    R, c, m = weights.shape
    rows = R * c
    w = weights.reshape(rows, m).contiguous()
    idx = creators.reshape(rows, m).contiguous()
    kk = k.reshape(R, 1).expand(R, c).reshape(rows).contiguous()
    u = uniforms.to(torch.float32).reshape(rows).contiguous()
    v = None if vals is None else vals.reshape(rows, m + 1).contiguous()
    out_idx = torch.empty(rows, m, dtype=torch.int64)
    out_w = torch.empty(rows, m, dtype=torch.float32)
    total = torch.empty(rows, dtype=torch.float32)
    chosen = torch.empty(rows, dtype=torch.int64)
    kth = torch.empty(rows, dtype=torch.float32) if v is not None else None
    tied = torch.empty(rows, dtype=torch.bool) if v is not None else None
    code = _draw_kernel()(
        rows,
        m,
        idx.data_ptr(),
        w.data_ptr(),
        kk.data_ptr(),
        u.data_ptr(),
        int(v is None),
        None if v is None else v.data_ptr(),
        out_idx.data_ptr(),
        out_w.data_ptr(),
        total.data_ptr(),
        chosen.data_ptr(),
        None if kth is None else kth.data_ptr(),
        None if tied is None else tied.data_ptr(),
        native.threads(rows, MIN_ROWS_PER_THREAD),
    )
    if code:
        raise MemoryError("toplists.draw: out of memory for a row buffer")
    return (
        chosen.view(R, c),
        out_w.view(R, c, m),
        out_idx.view(R, c, m),
        total.view(R, c, 1),
        None if kth is None else kth.view(R, c, 1),
        None if tied is None else tied.view(R, c),
    )


def _sums_kernel() -> ctypes._CFuncPtr | None:
    """``sums_rows`` of ``toplists.c``, or None."""
    return native.function(
        "toplists", "sums_rows", I64, I64, I64, I64, I64, PTR, PTR, PTR, PTR, PTR, PTR, PTR, INT, restype=INT
    )


def sums_available(*tensors: Tensor) -> bool:
    """The compiled RD and RR terms apply: every tensor (the weights, totals and vectors) float32 on the CPU,
    the kernel built."""
    return (
        all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and _sums_kernel() is not None
    )


def recommendation_terms(
    weights: Tensor, creators_idx: Tensor, total: Tensor, users: Tensor, creators: Tensor
) -> tuple[Tensor, Tensor]:
    """RD's and RR's per-user terms from each user's top entries, in one compiled pass a row (``sums_rows``):
    ``1 - |vbar_j|^2`` (at least 0) and ``<u_j, vbar_j>``, ``vbar_j = sum_t w_jt v_{i_jt} / total_j``, without
    gathering the ``(R, c, k, d)`` entry vectors. Float sums in entry order (torch's matmul may order them
    otherwise: the terms agree to a few units in the last place).

    Args:
        weights: ``(R, c, k)`` unnormalised weights of the creators ``creators_idx``.
        creators_idx: ``(R, c, k)`` int64 creator indices.
        total: ``(R, c, 1)`` the row sums of ``weights``.
        users: ``(R, c, d)`` the true unit user vectors.
        creators: ``(R, n, d)`` the true unit creator vectors.

    Returns:
        ``(R, c)`` RD terms and ``(R, c)`` RR terms.
    """
    R, c, k = creators_idx.shape
    n, d = creators.shape[1], creators.shape[2]
    rd = torch.empty(R, c, dtype=torch.float32)
    rr = torch.empty(R, c, dtype=torch.float32)
    w, idx, tot = weights.contiguous(), creators_idx.contiguous(), total.contiguous()
    u, v = users.contiguous(), creators.contiguous()
    code = _sums_kernel()(
        R * c,
        c,
        k,
        n,
        d,
        w.data_ptr(),
        idx.data_ptr(),
        tot.data_ptr(),
        u.data_ptr(),
        v.data_ptr(),
        rd.data_ptr(),
        rr.data_ptr(),
        native.threads(R * c, MIN_ROWS_PER_THREAD),
    )
    if code:
        raise MemoryError("recommendation_terms: out of memory for a row buffer")
    return rd, rr
