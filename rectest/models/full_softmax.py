"""The full-softmax cross-entropy fused with its score matmul, chunked over the batch.

``loss = mean_b [ log sum_{j not excluded} exp(<u_b, v_j> / t) - <u_b, v_pos_b> / t ]``: each row's positive
against every item of the catalogue, the row's other training items left out of the denominator. The same
loss as ``F.cross_entropy((U @ V.T / t).masked_fill(others, -inf), pos)``, without the dense (B, n)
logits, mask, log-softmax and their gradients in memory: rows are taken in chunks whose scores fit in cache;
while a chunk's scores are in cache they become the loss (log-sum-exp) and, in place, the gradient
``softmax - onehot``, which two small matmuls carry to ``U`` and ``V``: one score matmul and one exp pass
per chunk in all.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

CHUNK_ELEMENTS = 1 << 19  # scores per chunk (2 MiB in float32): a chunk's round trip stays in cache
# n exp(s) with s + log(n) below this stays under the float32 maximum (e^88.7), and exp(-s) above zero
EXP_LIMIT = 80.0


def full_softmax_loss(
    users: Tensor, items: Tensor, pos: Tensor, temperature: float, seen: Tensor | None
) -> Tensor:
    """Mean full-softmax cross-entropy of (B, d) user and (n, d) item vectors (scores ``U @ V.T``).

    Args:
        users: (B, d) the batch's user vectors (unit for cosine scores).
        items: (n, d) every item's vector.
        pos: (B,) each row's positive item.
        temperature: scores are divided by it.
        seen: (2, nnz) (row, item) pairs of each row's user's training items, left out of the denominator
            (the row's positive stays in); None leaves nothing out.
    """
    if seen is None:
        rows = cols = pos.new_empty(0)
    else:
        keep = seen[1] != pos[seen[0]]  # the positive itself stays in the denominator
        rows, cols = seen[0][keep], seen[1][keep]
        if rows.numel() > 1 and not bool((rows[1:] >= rows[:-1]).all()):  # (the datamodule's come sorted)
            order = torch.argsort(rows, stable=True)  # by row: a chunk's pairs are one slice
            rows, cols = rows[order], cols[order]
    return _FullSoftmax.apply(users, items, pos, rows, cols, 1.0 / temperature)


def _chunks(batch: int, n: int) -> list[tuple[int, int]]:
    step = max(1, CHUNK_ELEMENTS // max(n, 1))
    return [(a, min(a + step, batch)) for a in range(0, batch, step)]


def _scores(
    users: Tensor, items_t: Tensor, scale: float, a: int, b: int, rows: Tensor, cols: Tensor
) -> Tensor:
    """(b - a, n) scaled scores of rows a..b, their excluded items (``rows`` sorted) at -inf."""
    scores = torch.matmul(users[a:b] * scale, items_t)  # (c, n)
    if rows.numel():
        lo, hi = torch.searchsorted(rows, torch.tensor([a, b], device=rows.device)).tolist()
        scores[rows[lo:hi] - a, cols[lo:hi]] = float("-inf")
    return scores


class _FullSoftmax(torch.autograd.Function):
    """(users, items, pos, excluded rows, excluded cols, 1 / t) -> the mean loss.

    The gradient is computed in the forward pass, chunk by chunk, while each chunk's scores are in cache
    (one score matmul and one exp pass per chunk, as in the fused linear cross-entropy kernels of LLM
    training): the backward only scales it by the incoming gradient.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, users: Tensor, items: Tensor, pos: Tensor, rows: Tensor, cols: Tensor, scale: float
    ) -> Tensor:
        batch = users.shape[0]
        items_t = items.t()  # (d, n)
        lse = users.new_empty(batch)  # (B,)
        g_users = torch.empty_like(users)  # (B, d) d loss / d users, for an incoming gradient of 1
        g_items = torch.zeros_like(items)  # (n, d)
        # |score| <= max |u| max |v| / t: when n exp(bound) cannot overflow (cosine scores: bound 1 / t), the
        # row maximum need not be subtracted (the positive keeps every row sum above exp(-bound) > 0)
        bound = float(users.norm(dim=1).amax() * items.norm(dim=1).amax()) * scale if batch else 0.0
        shift = bound + math.log(max(items.shape[0], 1)) > EXP_LIMIT
        for a, b in _chunks(batch, items.shape[0]):
            p = _scores(users, items_t, scale, a, b, rows, cols)  # (c, n), excluded items at -inf
            if shift:
                top = p.amax(dim=1, keepdim=True)  # (c, 1)
                p.sub_(top)
            p.exp_()  # exp(s - max) or exp(s); excluded: 0
            total = p.sum(dim=1, keepdim=True)  # (c, 1)
            lse[a:b] = (top + total.log() if shift else total.log()).squeeze(1)
            p.mul_((scale / batch) / total)  # the softmax over the kept items, times d loss / d score
            p[torch.arange(b - a, device=p.device), pos[a:b]] -= scale / batch  # (softmax - onehot) scale / B
            g_users[a:b] = p @ items  # (c, d)
            g_items.addmm_(p.t(), users[a:b])  # (n, d)
        target = (users * items.index_select(0, pos)).sum(-1) * scale  # (B,)
        ctx.save_for_backward(g_users, g_items)
        return (lse - target).mean()

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        g_users, g_items = ctx.saved_tensors
        return g_users * grad, g_items * grad, None, None, None, None
