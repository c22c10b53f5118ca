"""Biased matrix factorisation: ``r_hat(u, i) = mu + b_u + b_i + <p_u, q_i>``.

For the simulation, a user is represented by its factor vector ``p_u`` and an item (creator) by ``q_i``,
both normalised to unit length (:meth:`MatrixFactorization.user_vectors`). The biases and the global mean
are not part of the exported vectors: they shift a user's scores by a constant (``mu + b_u``) or encode
popularity (``b_i``), which the dual-influence model has no place for.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rectest.errors import ConfigError
from rectest.models.mf_fused import mse_and_penalty


class MatrixFactorization(nn.Module):
    """Biased MF for explicit ratings (MSE) or implicit feedback (BPR / sampled softmax).

    Args:
        num_users: number of user indices.
        num_items: number of item indices.
        dim: factor dimension d.
        global_mean: initial value of ``mu`` (the training mean rating for explicit feedback, 0 for implicit).
        init_std: standard deviation of the Gaussian initialisation of the factors.
        sparse: build the embeddings with sparse gradients (train with ``optimizer="sparse_adam"``,
            "adagrad" or "sgd"): a step then touches only the rows of the batch's users and items, which
            is what makes a step cheap on catalogues of millions of rows.
        compile: run the explicit training loss and its gradients through :func:`torch.compile`
            (dense tables only; the first step compiles for seconds, CPU needs a C++ compiler): the
            throughput setting of ``benchmarks/bench_train.py``.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 16,
        global_mean: float = 0.0,
        init_std: float = 0.01,
        sparse: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if compile and sparse:
            raise ConfigError(
                "model.net.compile=true with model.net.sparse=true: the compiled training step needs dense "
                "tables (set one of them to false)"
            )
        self.compiled = compile
        self.user_factors = nn.Embedding(num_users, dim, sparse=sparse)  # (m, d)
        self.item_factors = nn.Embedding(num_items, dim, sparse=sparse)  # (n, d)
        self.user_bias = nn.Embedding(num_users, 1, sparse=sparse)  # (m, 1)
        self.item_bias = nn.Embedding(num_items, 1, sparse=sparse)  # (n, 1)
        self.global_mean = nn.Parameter(torch.tensor(float(global_mean)))
        nn.init.normal_(self.user_factors.weight, std=init_std)
        nn.init.normal_(self.item_factors.weight, std=init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)

    @property
    def num_items(self) -> int:
        return self.item_factors.num_embeddings

    def _rows(self, table: nn.Embedding, idx: Tensor) -> Tensor:
        """Rows ``table.weight[idx]``: (...,) indices -> (..., width).

        Dense tables use ``index_select``, whose backward is one ``index_add`` (``nn.Embedding``'s dense
        backward sorts the indices first and costs several times more per step); sparse tables keep the
        embedding lookup, the op that produces a sparse gradient.
        """
        if table.sparse:
            return F.embedding(idx, table.weight, sparse=True)
        flat = table.weight.index_select(0, idx.reshape(-1))  # (N, width)
        return flat.view(*idx.shape, table.embedding_dim)

    def _terms(self, user: Tensor, item: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Looked-up p (B, d), q (B, d) or (B, k, d), b_u (B,), b_i (B,) or (B, k)."""
        p = self._rows(self.user_factors, user)
        q = self._rows(self.item_factors, item)
        bu = self._rows(self.user_bias, user).squeeze(-1)
        bi = self._rows(self.item_bias, item).squeeze(-1)
        return p, q, bu, bi

    def _combine(self, p: Tensor, q: Tensor, bu: Tensor, bi: Tensor) -> Tensor:
        if q.dim() == 3:
            return self.global_mean + bu.unsqueeze(-1) + bi + torch.einsum("bd,bkd->bk", p, q)  # (B, k)
        return self.global_mean + bu + bi + (p * q).sum(-1)  # (B,)

    def forward(self, user: Tensor, item: Tensor) -> Tensor:
        """Predicted rating (or implicit score) of user-item pairs.

        Args:
            user: (B,) user indices.
            item: (B,) or (B, k) item indices.

        Returns:
            Scores with the shape of ``item``.
        """
        return self._combine(*self._terms(user, item))

    def forward_with_penalty(self, user: Tensor, item: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`forward` and :meth:`penalty` from one lookup of each table (the training step's form).

        Args:
            user: (B,) user indices.
            item: (B,) item indices.

        Returns:
            (B,) scores and the scalar penalty.
        """
        p, q, bu, bi = self._terms(user, item)
        penalty = (p.pow(2).sum(-1) + q.pow(2).sum(-1) + bu.pow(2) + bi.pow(2)).mean()
        return self._combine(p, q, bu, bi), penalty

    def mse_and_penalty(self, user: Tensor, item: Tensor, rating: Tensor) -> tuple[Tensor, Tensor]:
        """Mean squared error against (B,) ratings and :meth:`penalty` of (B,) pairs, in one fused pass.

        Dense tables use :func:`rectest.models.mf_fused.mse_and_penalty` (hand-written backward, same
        gradients); sparse tables go through autograd (:meth:`forward_with_penalty`).

        Returns:
            (MSE, penalty), two scalars.
        """
        if self.user_factors.sparse:
            pred, penalty = self.forward_with_penalty(user, item)
            return F.mse_loss(pred, rating), penalty
        tables = (self.user_factors, self.item_factors, self.user_bias, self.item_bias)
        weights = (t.weight for t in tables)
        return mse_and_penalty(*weights, self.global_mean, (user, item, rating), compiled=self.compiled)

    def score_matrix(self, user: Tensor, item: Tensor) -> Tensor:
        """Scores of every (user, item) combination: (B,) users x (N,) items -> (B, N)."""
        dot = self.user_factors(user) @ self.item_factors(item).T  # (B, N)
        return self.global_mean + self.user_bias(user) + self.item_bias(item).T + dot

    def score_all(self, user: Tensor) -> Tensor:
        """Scores of every item for a batch of users (the model's own full-ranking score).

        Args:
            user: (B,) user indices.

        Returns:
            (B, n) scores; ranking by a row equals ranking by :meth:`forward`.
        """
        dot = self.user_factors(user) @ self.item_factors.weight.T  # (B, n)
        return self.global_mean + self.user_bias(user) + self.item_bias.weight.T + dot

    def penalty(self, user: Tensor, item: Tensor) -> Tensor:
        """Per-example squared norm of the parameters a batch touches (classic MF regulariser).

        Args:
            user: (B,) user indices.
            item: (B,) or (B, k) item indices.

        Returns:
            Scalar: mean over the batch of ``|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2`` (items summed over k).
        """
        per_user = self.user_factors(user).pow(2).sum(-1) + self.user_bias(user).squeeze(-1).pow(2)  # (B,)
        per_item = self.item_factors(item).pow(2).sum(-1) + self.item_bias(item).squeeze(-1).pow(2)
        if per_item.dim() == 2:
            per_item = per_item.sum(-1)  # (B,)
        return (per_user + per_item).mean()

    @torch.no_grad()
    def user_vectors(self) -> Tensor:
        """(m, d) unit-norm user factor vectors ``p_u / |p_u|`` (the users of the simulation)."""
        return F.normalize(self.user_factors.weight.detach(), dim=-1)

    @torch.no_grad()
    def item_vectors(self) -> Tensor:
        """(n, d) unit-norm item factor vectors ``q_i / |q_i|`` (the creators of the simulation)."""
        return F.normalize(self.item_factors.weight.detach(), dim=-1)
