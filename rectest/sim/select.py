"""Exact top-k selection on CPU from a small compiled kernel (``select.c``), torch's ``topk`` elsewhere.

``torch.topk`` costs 16-25 us a row of 1,682-2,000 scores on this project's CPU whatever ``k`` is (it sorts
index pairs), while the policies only need the ``k``-th largest score of each row (the eligible set is
``s >= kth``) and, for short lists, the eligible creators in index order. ``select.c`` finds the ``k``-th value
in a buffer the L1 cache holds (one pass for ``k <= 24``, else a binary search over the bits of the scores,
one vectorised counting pass per bit): a few microseconds a row. The value is an element of the row, so every
result is bit for bit what ``torch.topk`` gives, and the draws do not change.

:func:`draw_truncated` draws from softmax(beta) over each row's eligible scores (the top k above a threshold)
without an exp of every score: the row's eligible creators are listed in one compressing pass and proposed
uniformly, each accepted with probability ``exp(beta (s - smax))``; a row that rejects every proposal takes the
inverse-CDF draw over its eligible weights. Exact, not an approximation (rejection sampling against the uniform
proposal; tested against the dense probabilities).

The kernel is built and loaded by :mod:`rectest.sim.native` (compiled at first use, run on torch's OpenMP
threads). Without it, :func:`available` is False and the policies use ``torch.topk`` (on CUDA ``torch.topk``
is the fast path).
"""

from __future__ import annotations

import ctypes
import math

import torch
from torch import Tensor

from rectest.sim import native
from rectest.sim.native import I64, INT, PTR

MIN_ROWS_PER_THREAD = 64  # at least this many rows for each thread (fewer rows: fewer threads)
HINT_SLACK = 32  # select.c's HINT_SLACK: a hint is a row's (k + HINT_SLACK)-th score


def hints_pay(k: int, n: int) -> bool:
    """True if hints make the selection of the top ``k`` of ``n`` scores cheaper: rows long against their
    candidates (``n >= 4 (k + HINT_SLACK)``; the synthetic sweep's top-10 of 50 is as fast without)."""
    return n >= 4 * (k + HINT_SLACK)


def _kernel() -> ctypes._CFuncPtr | None:
    """``select_rows`` of ``select.c``, or None."""
    # rows, n, scores, at, k, kth, count, idx, kmax, mask, logits, scale, hint, picked, threads
    args = (I64, I64, *[PTR] * 6, I64, *[PTR] * 5, INT)
    return native.function("select", "select_rows", *args, restype=INT)


def available(device: torch.device, dtype: torch.dtype) -> bool:
    """True if :func:`select` handles scores of this device and dtype (float32 on the CPU, and the kernel could
    be built)."""
    return torch.device(device).type == "cpu" and dtype == torch.float32 and _kernel() is not None


def select(
    scores: Tensor, k: Tensor, kmax: int = 0, hints: Tensor | None = None, at: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The ``k``-th largest score of each row, how many scores reach it, and the first ``kmax`` of them.

    Args:
        scores: ``(..., n)`` float32 CPU scores (see :func:`available`).
        k: integer ranks in ``[1, n]``, broadcastable to ``scores.shape[:-1]``.
        kmax: how many indices to return per row (0: none).
        hints: ``(...)`` contiguous float32 scores carried from the rows' previous call (NaN: none yet), or
            None. Refreshed in place. When at least ``k`` scores of a row reach its hint, the row's selection
            reads those candidates only; the results do not depend on the hints (see ``select.c``).
        at: ``(B,)`` int64 row numbers into ``scores.reshape(-1, n)``: only those rows are selected, read where
            they lie (no copy of them); ``...`` is then ``(B,)``. Not with ``hints``.

    Returns:
        ``(...)`` the k-th largest values (``torch.topk(k).values.min()``, bit for bit), ``(...)`` int64 the
        number of scores ``>= kth`` (``k`` unless the k-th value ties with the next), and ``(..., kmax)`` int64
        the indices of the first ``kmax`` such scores in index order (padded with the last one when fewer).
    """
    kth, count, idx, _, _ = _run(scores, k, kmax, False, None, hints, at)
    return kth, count, idx


def select_logits(
    scores: Tensor, k: Tensor, kmax: int, beta: Tensor, hints: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`select`, and ``beta`` times the score at each listed index: bit for bit
    ``torch.mul(scores.gather(-1, idx), beta)``, without the gather.

    Args:
        scores, k, kmax, hints: as :func:`select` (``kmax >= 1``).
        beta: scales broadcastable to ``scores.shape[:-1]``.

    Returns:
        The k-th values, the counts, the ``(..., kmax)`` indices and the ``(..., kmax)`` float32 logits.
    """
    scale = torch.as_tensor(beta, dtype=torch.float32).expand(scores.shape[:-1]).reshape(-1).contiguous()
    kth, count, idx, _, logits = _run(scores, k, kmax, False, scale, hints)
    return kth, count, idx, logits


def top_mask(scores: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    """The float 0/1 mask of the scores at least each row's ``k``-th largest, and their number.

    Args:
        scores: ``(..., n)`` float32 CPU scores (see :func:`available`).
        k: integer ranks in ``[1, n]``, broadcastable to ``scores.shape[:-1]``.

    Returns:
        ``(..., n)`` float32 1 where ``scores >= kth`` (ties at the k-th value included) else 0, and ``(...)``
        int64 the count of ones (``k`` unless the k-th value ties with the next).
    """
    _, count, _, mask, _ = _run(scores, k, 0, True, None)
    return mask, count


def top_weights(scores: Tensor, k: Tensor, beta: Tensor) -> Tensor:
    """``exp(beta * s)`` on each row's top ``k`` (ties at the k-th value included), 0 elsewhere: the weights of
    softmax(beta) truncated to the top k, bit for bit ``torch.mul(s, beta).exp_() * mask``.

    Args:
        scores: ``(..., n)`` float32 CPU scores (see :func:`available`).
        k: integer ranks in ``[1, n]``, broadcastable to ``scores.shape[:-1]``.
        beta: finite scales ``<= 40`` (no overflow), broadcastable to ``scores.shape[:-1]``.

    Returns:
        ``(..., n)`` float32 weights.
    """
    scale = torch.as_tensor(beta, dtype=torch.float32).expand(scores.shape[:-1]).reshape(-1).contiguous()
    _, _, _, mask, logits = _run(scores, k, 0, True, scale)
    return logits.exp_().mul_(mask)


def _run(
    scores: Tensor,
    k: Tensor,
    kmax: int,
    with_mask: bool,
    scale: Tensor | None,
    hints: Tensor | None = None,
    at: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Call the kernel over the rows of ``scores`` (those numbered by ``at``) on ``torch.get_num_threads()``
    threads."""
    lead, n = scores.shape[:-1], scores.shape[-1]
    flat = scores.reshape(-1, n).contiguous()  # (B, n)
    if at is not None:
        if hints is not None or with_mask or at.dim() != 1:
            raise ValueError("select: rows given by at: a 1-d index, without hints or a mask")
        if at.numel() and not (0 <= int(at.min()) and int(at.max()) < flat.shape[0]):
            raise ValueError(f"select: row numbers must lie in [0, {flat.shape[0]})")
        lead, at = at.shape, at.to(torch.int64).contiguous()
    ranks = torch.as_tensor(k, dtype=torch.int64).expand(lead).reshape(-1).contiguous()  # (B,)
    rows = ranks.shape[0]
    if rows and not bool(((ranks >= 1) & (ranks <= n)).all()):
        raise ValueError(f"select: ranks must lie in [1, {n}]")
    kth = torch.empty(rows, dtype=torch.float32)
    count = torch.empty(rows, dtype=torch.int64)
    idx = torch.empty(rows, kmax, dtype=torch.int64)
    mask = torch.empty(rows, n if with_mask else 0, dtype=torch.float32)
    picked = scale is not None and not with_mask  # logits at the listed indices (select_logits)
    width = 0 if scale is None else kmax if picked else n
    logits = torch.empty(rows, width, dtype=torch.float32)
    if hints is not None and (
        hints.shape != lead or hints.dtype != torch.float32 or not hints.is_contiguous() or hints.is_cuda
    ):
        raise ValueError(f"select: hints must be contiguous float32 CPU scores of shape {tuple(lead)}")
    kernel = _kernel()
    if kernel is None:
        raise RuntimeError("select: the kernel is not available (check available() first)")

    code = kernel(
        rows,
        n,
        flat.data_ptr(),
        None if at is None else at.data_ptr(),
        ranks.data_ptr(),
        kth.data_ptr(),
        count.data_ptr(),
        idx.data_ptr() if kmax else None,
        kmax,
        mask.data_ptr() if with_mask else None,
        logits.data_ptr() if scale is not None and not picked else None,
        scale.data_ptr() if scale is not None else None,
        hints.data_ptr() if hints is not None else None,
        logits.data_ptr() if picked and kmax else None,
        native.threads(rows, MIN_ROWS_PER_THREAD),
    )
    if code:
        raise MemoryError("select: out of memory for a row buffer")
    shaped = (x.view(*lead, x.shape[-1]) for x in (idx, mask, logits))
    return kth.view(lead), count.view(lead), *shaped


def _draw_kernel() -> ctypes._CFuncPtr | None:
    """``draw_rows`` of ``select.c``, or None."""
    return native.function(
        "select", "draw_rows", I64, I64, PTR, PTR, PTR, PTR, PTR, PTR, I64, PTR, PTR, INT, restype=INT
    )


def draw_truncated(
    scores: Tensor, k: Tensor, tau: Tensor, beta: Tensor, uniforms: Tensor, proposals: Tensor | None
) -> tuple[Tensor, Tensor]:
    """One draw per row from softmax(beta) over the row's eligible scores: the top ``k`` (ties at the k-th
    included) that are also at least ``tau``; a uniform creator where none is eligible.

    Exact: up to ``L`` proposals uniform over the eligible creators, accepted with probability
    ``exp(beta (s - smax))`` (``smax`` the row's largest eligible score); if all are rejected (or ``L = 0``),
    the inverse-CDF draw of ``uniforms`` over the eligible weights (see ``draw_row`` in ``select.c``). The
    proposals cost a few scores a row where the full-row draw costs an ``exp`` of every score. Float32 CPU
    scores go through the kernel (see :func:`available`); others (CUDA, float64, no C compiler) through the same
    algorithm in torch, which draws the same creators up to rounding (an acceptance within a rounding of its
    probability).

    Args:
        scores: ``(..., n)`` scores.
        k: integer ranks in ``[1, n]`` (``n``: no truncation), broadcastable to ``scores.shape[:-1]``.
        tau: thresholds (``-inf``: none), broadcastable to ``scores.shape[:-1]``.
        beta: finite sensitivities ``>= 0``, broadcastable to ``scores.shape[:-1]``.
        uniforms: ``(...)`` draws in ``[0, 1)`` for the rows whose proposals are all rejected.
        proposals: ``(..., L)`` float64 uniforms in ``[0, 1)``, or None (the inverse-CDF draw alone).

    Returns:
        ``(...)`` int64 creator indices, ``-1`` for a row that holds a NaN (or whose best eligible score is
        infinite); ``(...)`` each row's eligibility threshold ``max(kth, tau)`` (float32 from the kernel; NaN where
        the choice is -1).
    """
    lead, n = scores.shape[:-1], scores.shape[-1]
    flat = scores.reshape(-1, n).contiguous()  # (B, n)
    rows, device = flat.shape[0], scores.device

    def per_row(x: Tensor | float, dtype: torch.dtype) -> Tensor:
        return torch.as_tensor(x, dtype=dtype, device=device).expand(lead).reshape(-1).contiguous()  # (B,)

    ranks = per_row(k, torch.int64)
    if rows and not bool(((ranks >= 1) & (ranks <= n)).all()):
        raise ValueError(f"draw_truncated: ranks must lie in [1, {n}]")
    u = uniforms.to(torch.float64).reshape(-1).contiguous()  # (B,)
    L = 0 if proposals is None else proposals.shape[-1]
    p = None if proposals is None else proposals.to(torch.float64).reshape(rows, L).contiguous()  # (B, L)
    if not available(device, scores.dtype):
        chosen, thresholds = _draw_truncated_torch(
            flat, ranks, per_row(tau, scores.dtype), per_row(beta, torch.float64), u, p
        )
        return chosen.view(lead), thresholds.view(lead)
    thresholds, betas = per_row(tau, torch.float32), per_row(beta, torch.float32)
    chosen = torch.empty(rows, dtype=torch.int64)
    thresholds_out = torch.empty(rows, dtype=torch.float32)
    code = _draw_kernel()(
        rows,
        n,
        flat.data_ptr(),
        ranks.data_ptr(),
        thresholds.data_ptr(),
        betas.data_ptr(),
        u.data_ptr(),
        None if p is None else p.data_ptr(),
        L,
        chosen.data_ptr(),
        thresholds_out.data_ptr(),
        native.threads(rows, MIN_ROWS_PER_THREAD),
    )
    if code:
        raise MemoryError("draw_truncated: out of memory for a row buffer")
    return chosen.view(lead), thresholds_out.view(lead)


def _draw_truncated_torch(
    s: Tensor, k: Tensor, tau: Tensor, beta: Tensor, u: Tensor, p: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``draw_row`` of ``select.c`` in torch for ``(B, n)`` rows: the same steps, the same use of the uniforms.

    Args:
        s: ``(B, n)`` scores; k: ``(B,)`` ranks; tau: ``(B,)`` thresholds; beta: ``(B,)`` float64; u: ``(B,)``
            float64 uniforms; p: ``(B, L)`` float64 proposals or None.

    Returns:
        ``(B,)`` int64 choices (-1: a NaN row) and ``(B,)`` thresholds.
    """
    B, n = s.shape
    kth = torch.full_like(tau, -math.inf)  # (B,) no truncation where k = n
    short = k < n
    if bool(short.any()):
        top = s[short].topk(int(k[short].max()), dim=-1).values  # (b, kmax) descending
        kth[short] = top.gather(-1, (k[short] - 1).unsqueeze(-1)).squeeze(-1)
    v = torch.maximum(kth, tau)  # (B,) the eligibility threshold
    eligible = s >= v.unsqueeze(-1)  # (B, n)
    count = eligible.sum(-1)  # (B,)
    sd = s.to(torch.float64)
    smax = sd.masked_fill(~eligible, -math.inf).amax(-1)  # (B,) the largest eligible score
    bad = s.isnan().any(-1) | ((count > 0) & ~torch.isfinite(smax))  # (B,) as the kernel: -1
    chosen = torch.full((B,), -1, dtype=torch.int64, device=s.device)
    accepted = torch.zeros(B, dtype=torch.bool, device=s.device)
    if p is not None and p.shape[1]:
        c = count.unsqueeze(-1).to(torch.float64)  # (B, 1)
        x = p * c  # (B, L)
        i = x.floor().minimum(c - 1).clamp_min(0)  # (B, L) the proposal's rank among the eligible
        ranks = eligible.cumsum(-1)  # (B, n) eligible creators up to each one
        pos = torch.searchsorted(ranks, i.long() + 1).clamp_max(
            n - 1
        )  # (B, L) the (i + 1)-th eligible creator
        ok = (x - i) < torch.exp(beta.unsqueeze(-1) * (sd.gather(-1, pos) - smax.unsqueeze(-1)))  # (B, L)
        accepted = ok.any(-1) & (count > 0)
        first = ok.to(torch.uint8).argmax(-1, keepdim=True)  # (B, 1) the first accepted
        chosen = torch.where(accepted, pos.gather(-1, first).squeeze(-1), chosen)
    empty = count == 0
    chosen = torch.where(empty, (u * n).long().clamp_max(n - 1), chosen)
    rest = (~accepted & ~empty & ~bad).nonzero().squeeze(-1)  # (t,) the inverse-CDF draws
    if rest.numel():
        w = torch.exp(beta[rest].unsqueeze(-1) * (sd[rest] - smax[rest].unsqueeze(-1)))  # (t, n)
        w = w.masked_fill_(~eligible[rest], 0.0)
        cdf = w.cumsum(-1)  # (t, n)
        target = u[rest].unsqueeze(-1) * cdf[:, -1:]  # (t, 1)
        last = n - 1 - eligible[rest].flip(-1).to(torch.uint8).argmax(-1)  # (t,) the last eligible creator
        pick = (cdf <= target).sum(-1).minimum(last)  # (t,) the first whose cumulative sum exceeds the target
        chosen[rest] = pick
    chosen = torch.where(bad, -1, chosen)
    return chosen, torch.where(bad, math.nan, v)
