"""The explicit MF training loss with a hand-written backward (the fast path of a training step).

``mse_and_penalty`` returns the same two numbers as ``MatrixFactorization.forward_with_penalty`` followed by
the mean squared error, and the same gradients, but its backward is a few fused passes over the batch
(``addcmul`` + one ``index_add_`` per table) instead of autograd's dozen elementwise kernels: on CPU it is
what lets a Python-level training step keep up with Surprise's compiled SGD loop.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx


class _MSEAndPenalty(torch.autograd.Function):
    """(P, Q, b_u, b_i, mu, user, item, rating) -> (MSE, mean per-example squared norm)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        p_table: Tensor,
        q_table: Tensor,
        bu_table: Tensor,
        bi_table: Tensor,
        mu: Tensor,
        user: Tensor,
        item: Tensor,
        rating: Tensor,
    ) -> tuple[Tensor, Tensor]:
        p = p_table.index_select(0, user)  # (B, d)
        q = q_table.index_select(0, item)  # (B, d)
        bu = bu_table.view(-1).index_select(0, user)  # (B,)
        bi = bi_table.view(-1).index_select(0, item)  # (B,)
        dot = torch.bmm(p.unsqueeze(1), q.unsqueeze(2)).view(-1)  # (B,)
        err = dot.add_(bu).add_(bi).add_(mu).sub_(rating)  # (B,) prediction - rating
        n = len(user)
        mse = torch.dot(err, err) / n
        flat_p, flat_q = p.view(-1), q.view(-1)
        penalty = (
            torch.dot(flat_p, flat_p) + torch.dot(flat_q, flat_q) + torch.dot(bu, bu) + torch.dot(bi, bi)
        ) / n
        ctx.save_for_backward(p, q, bu, bi, err, user, item)
        ctx.shapes = (p_table.shape, q_table.shape, bu_table.shape, bi_table.shape)
        return mse, penalty

    @staticmethod
    def backward(ctx: FunctionCtx, g_mse: Tensor, g_penalty: Tensor) -> tuple[Tensor | None, ...]:
        p, q, bu, bi, err, user, item = ctx.saved_tensors
        n = len(user)
        s = err * (2.0 * g_mse / n)  # (B,) d loss / d prediction
        c = 2.0 * g_penalty / n  # scalar d loss / d (each touched parameter), times the parameter
        s_col = s.unsqueeze(1)  # (B, 1)
        grad_p = torch.addcmul(p * c, s_col, q)  # (B, d)
        grad_q = torch.addcmul(q * c, s_col, p)  # (B, d)
        p_shape, q_shape, bu_shape, bi_shape = ctx.shapes
        gp = p.new_zeros(p_shape).index_add_(0, user, grad_p)
        gq = q.new_zeros(q_shape).index_add_(0, item, grad_q)
        gbu = p.new_zeros(bu_shape).view(-1).index_add_(0, user, torch.add(s, bu, alpha=c)).view(bu_shape)
        gbi = p.new_zeros(bi_shape).view(-1).index_add_(0, item, torch.add(s, bi, alpha=c)).view(bi_shape)
        return gp, gq, gbu, gbi, s.sum(), None, None, None


def mse_and_penalty(
    p_table: Tensor,
    q_table: Tensor,
    bu_table: Tensor,
    bi_table: Tensor,
    mu: Tensor,
    batch: tuple[Tensor, Tensor, Tensor],
) -> tuple[Tensor, Tensor]:
    """Mean squared error of biased-MF predictions and the mean per-example L2 of the touched parameters.

    Args:
        p_table: (m, d) user factors; q_table: (n, d) item factors.
        bu_table: (m, 1) user biases; bi_table: (n, 1) item biases; mu: () global mean.
        batch: (B,) user indices, (B,) item indices, (B,) ratings.

    Returns:
        ``mean_b (mu + b_u + b_i + <p_u, q_i> - r)^2`` and ``mean_b |p_u|^2 + |q_i|^2 + b_u^2 + b_i^2``,
        both differentiable in the five parameters (dense gradients).
    """
    user, item, rating = batch
    return _MSEAndPenalty.apply(p_table, q_table, bu_table, bi_table, mu, user, item, rating)
