"""The explicit MF training loss with a hand-written backward (the fast path of a training step).

``mse_and_penalty`` returns the same two numbers as ``MatrixFactorization.forward_with_penalty`` followed by
the mean squared error, and the same gradients, but its backward is a few fused passes over the batch (one
product per factor table and one ``index_add_`` per table) instead of autograd's dozen elementwise kernels.

With ``compiled=True`` both halves go through :func:`torch.compile` (Inductor): the gathers, the dot
products, the error and the scatter of the gradients become one or two generated loops per half, which keeps
a batch's rows in cache. On this project's 2-core CPU that is what lets a Python-level training step
outrun Surprise's compiled SGD loop (``benchmarks/bench_train.py``). The first call compiles (seconds; CPU
needs a C++ compiler); later calls of most batch sizes reuse the code (dynamic shapes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch._dynamo.exc
import torch._inductor.exc
from torch import Tensor
from torch.autograd.function import FunctionCtx

from rectest.errors import ConfigError

Tables = tuple[Tensor, Tensor, Tensor, Tensor]  # P (m, d), Q (n, d), b_u (m,), b_i (n,)


def _forward(tables: Tables, mu: Tensor, user: Tensor, item: Tensor, rating: Tensor) -> tuple[Tensor, ...]:
    """(MSE, mean per-example squared norm, (B,) errors prediction - rating)."""
    p_table, q_table, bu_table, bi_table = tables
    p = p_table.index_select(0, user)  # (B, d)
    q = q_table.index_select(0, item)  # (B, d)
    bu = bu_table.index_select(0, user)  # (B,)
    bi = bi_table.index_select(0, item)  # (B,)
    err = (p * q).sum(-1) + bu + bi + mu - rating  # (B,)
    n = user.shape[0]
    mse = (err * err).sum() / n
    penalty = ((p * p).sum() + (q * q).sum() + (bu * bu).sum() + (bi * bi).sum()) / n
    return mse, penalty, err


def _backward(
    tables: Tables, user: Tensor, item: Tensor, err: Tensor, g_mse: Tensor, g_penalty: Tensor
) -> tuple[Tensor, ...]:
    """Gradients of ``g_mse * MSE + g_penalty * penalty`` for P, Q, b_u, b_i (dense tables) and mu."""
    p_table, q_table, bu_table, bi_table = tables
    n = user.shape[0]
    p = p_table.index_select(0, user)  # (B, d), gathered again: cheaper than keeping them
    q = q_table.index_select(0, item)  # (B, d)
    s = err * (2.0 * g_mse / n)  # (B,) d loss / d prediction
    c = 2.0 * g_penalty / n  # d loss / d (each touched parameter), per unit of the parameter
    s_col = s.unsqueeze(1)  # (B, 1)
    gp = torch.zeros_like(p_table).index_add_(0, user, q * s_col + p * c)  # (m, d)
    gq = torch.zeros_like(q_table).index_add_(0, item, p * s_col + q * c)  # (n, d)
    gbu = torch.zeros_like(bu_table).index_add_(0, user, s + bu_table.index_select(0, user) * c)  # (m,)
    gbi = torch.zeros_like(bi_table).index_add_(0, item, s + bi_table.index_select(0, item) * c)  # (n,)
    return gp, gq, gbu, gbi, s.sum()


_COMPILED: dict[str, Callable] = {}
COMPILER_ERRORS = (torch._dynamo.exc.BackendCompilerFailed, torch._inductor.exc.InductorError)


def _kernels(compiled: bool) -> tuple[Callable, Callable]:
    """The eager or the (lazily) compiled forward and backward halves."""
    if not compiled:
        return _forward, _backward
    if not _COMPILED:
        _COMPILED["forward"] = torch.compile(_forward, dynamic=True)
        _COMPILED["backward"] = torch.compile(_backward, dynamic=True)
    return _COMPILED["forward"], _COMPILED["backward"]


@contextmanager
def _scatter_with_atomic_adds(compiled: bool) -> Iterator[None]:
    """Runs a compiled half: atomic scatter-adds allowed, a compiler failure turned into one ConfigError.

    In deterministic mode Inductor replaces every scatter-add with a sorting fallback that costs more than
    the rest of the step, so deterministic algorithms are switched off around the compiled call. Atomic adds
    are exact to float rounding, and bit-reproducible on a CPU running one thread; with several threads (or
    on CUDA) the order of the additions may vary between runs. Compiling happens on the first call of each
    half (and again for new shapes); only compiler errors become a ConfigError, any other error is raised
    as it is.
    """
    if not compiled:
        yield
        return
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    except COMPILER_ERRORS as error:
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise ConfigError(
            f"model.net.compile=true: torch.compile failed ({type(error).__name__}: {first}); set "
            "model.net.compile=false, or install a C++ compiler (CPU) or Triton (CUDA)"
        ) from error
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


class _MSEAndPenalty(torch.autograd.Function):
    """(P, Q, b_u, b_i, mu, user, item, rating, compiled) -> (MSE, mean per-example squared norm)."""

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
        compiled: bool,
    ) -> tuple[Tensor, Tensor]:
        forward, _ = _kernels(compiled)
        flat = (p_table, q_table, bu_table.view(-1), bi_table.view(-1))
        with _scatter_with_atomic_adds(compiled):
            mse, penalty, err = forward(flat, mu, user, item, rating)
        ctx.save_for_backward(p_table, q_table, bu_table, bi_table, err, user, item)
        ctx.compiled = compiled
        return mse, penalty

    @staticmethod
    def backward(ctx: FunctionCtx, g_mse: Tensor, g_penalty: Tensor) -> tuple[Tensor | None, ...]:
        p_table, q_table, bu_table, bi_table, err, user, item = ctx.saved_tensors
        _, backward = _kernels(ctx.compiled)
        flat = (p_table, q_table, bu_table.view(-1), bi_table.view(-1))
        with _scatter_with_atomic_adds(ctx.compiled):
            gp, gq, gbu, gbi, gmu = backward(flat, user, item, err, g_mse, g_penalty)
        return gp, gq, gbu.view_as(bu_table), gbi.view_as(bi_table), gmu, None, None, None, None


def mse_and_penalty(
    p_table: Tensor,
    q_table: Tensor,
    bu_table: Tensor,
    bi_table: Tensor,
    mu: Tensor,
    batch: tuple[Tensor, Tensor, Tensor],
    compiled: bool = False,
) -> tuple[Tensor, Tensor]:
    """Mean squared error of biased-MF predictions and the mean per-example L2 of the touched parameters.

    Args:
        p_table: (m, d) user factors; q_table: (n, d) item factors.
        bu_table: (m, 1) user biases; bi_table: (n, 1) item biases; mu: () global mean.
        batch: (B,) user indices, (B,) item indices, (B,) ratings.
        compiled: run both halves through :func:`torch.compile` (same values and gradients up to float
            rounding).

    Returns:
        ``mean_b (mu + b_u + b_i + <p_u, q_i> - r)^2`` and ``mean_b |p_u|^2 + |q_i|^2 + b_u^2 + b_i^2``,
        both differentiable in the five parameters (dense gradients).
    """
    user, item, rating = batch
    return _MSEAndPenalty.apply(p_table, q_table, bu_table, bi_table, mu, user, item, rating, compiled)
