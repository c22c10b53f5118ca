"""Two-tower retrieval model: an MLP over user-id embeddings and an MLP over item-id embeddings.

The score is the cosine of the two tower outputs (default, as the simulation uses unit vectors) or their
dot product. :meth:`TwoTower.user_vectors` / :meth:`TwoTower.item_vectors` are the unit-norm tower outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rectest.errors import ConfigError

SCORE_COSINE = "cosine"
SCORE_DOT = "dot"
SCORE_KINDS = (SCORE_COSINE, SCORE_DOT)


def _mlp(in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float) -> nn.Sequential:
    """Linear-ReLU(-Dropout) blocks of the given widths, then a linear map to ``out_dim``."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class Tower(nn.Module):
    """Id embedding followed by an MLP: index (B,) -> vector (B, out_dim)."""

    def __init__(
        self, num_ids: int, id_dim: int, hidden: Sequence[int], out_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_ids, id_dim)
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.mlp = _mlp(id_dim, hidden, out_dim, dropout)

    def forward(self, ids: Tensor) -> Tensor:
        """ids (...,) -> (..., out_dim)."""
        return self.mlp(self.embedding(ids))


class TwoTower(nn.Module):
    """User tower and item tower scored by cosine (default) or dot product.

    Args:
        num_users: number of user indices.
        num_items: number of item indices.
        dim: output dimension of both towers (16 as in the paper).
        id_dim: width of the id embeddings feeding each tower.
        hidden: widths of the hidden layers of each tower (empty: a single linear map).
        score: "cosine" or "dot".
        dropout: dropout after each hidden layer.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 16,
        id_dim: int = 64,
        hidden: Sequence[int] = (64,),
        score: str = SCORE_COSINE,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if score not in SCORE_KINDS:
            raise ConfigError(f"model.net.score={score!r}: expected one of {SCORE_KINDS}")
        self.score_kind = score
        self.user_tower = Tower(num_users, id_dim, list(hidden), dim, dropout)
        self.item_tower = Tower(num_items, id_dim, list(hidden), dim, dropout)

    @property
    def num_items(self) -> int:
        return self.item_tower.embedding.num_embeddings

    def _prepare(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1) if self.score_kind == SCORE_COSINE else x

    def forward(self, user: Tensor, item: Tensor) -> Tensor:
        """Scores of user-item pairs.

        Args:
            user: (B,) user indices.
            item: (B,) or (B, k) item indices.

        Returns:
            Scores with the shape of ``item`` (cosines in [-1, 1] when score="cosine").
        """
        u = self._prepare(self.user_tower(user))  # (B, d)
        v = self._item_outputs(item)  # (B, d) or (B, k, d)
        if item.dim() == 2:
            return torch.einsum("bd,bkd->bk", u, v)  # (B, k)
        return (u * v).sum(-1)  # (B,)

    def unit_vectors(self, user: Tensor, item: Tensor) -> tuple[Tensor, Tensor]:
        """Unit-norm tower outputs (with gradients) of (B,) users and (N,) items: ``(B, d)``, ``(N, d)``."""
        return F.normalize(self.user_tower(user), dim=-1), F.normalize(self.item_tower(item), dim=-1)

    def _item_outputs(self, item: Tensor) -> Tensor:
        """Prepared item-tower outputs of (...,) item indices -> (..., d).

        When a batch names more items than the catalogue holds (B x (1 + k) with sampled negatives), the
        tower runs once over the whole catalogue and the rows are gathered: the same values and gradients
        as running it per row, at a fraction of the cost.
        """
        if item.numel() <= self.num_items:
            return self._prepare(self.item_tower(item))
        everything = self._prepare(self.item_tower.mlp(self.item_tower.embedding.weight))  # (n, d)
        return everything.index_select(0, item.reshape(-1)).view(*item.shape, -1)

    def score_matrix(self, user: Tensor, item: Tensor) -> Tensor:
        """Scores of every (user, item) combination: (B,) users x (N,) items -> (B, N)."""
        u = self._prepare(self.user_tower(user))  # (B, d)
        v = self._prepare(self.item_tower(item))  # (N, d)
        return u @ v.T  # (B, N)

    def score_factors(self, user: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) users -> ``(U (B, d), V (n, d))`` with :meth:`score_all` ``= U @ V.T`` (unit rows for cosine
        scores): what the fused full-softmax loss takes instead of the (B, n) scores."""
        u = self._prepare(self.user_tower(user))  # (B, d)
        v = self._prepare(self.item_tower.mlp(self.item_tower.embedding.weight))  # (n, d)
        return u, v

    def score_all(self, user: Tensor) -> Tensor:
        """(B,) user indices -> (B, n) scores of every item.

        With score="cosine" this is :func:`rectest.sim.scoring.cosine_scores` of the tower outputs, the same
        function the simulation policies use.
        """
        u = self.user_tower(user)  # (B, d)
        v = self.item_tower.mlp(self.item_tower.embedding.weight)  # (n, d)
        if self.score_kind == SCORE_COSINE:
            from rectest.sim.scoring import cosine_scores

            return cosine_scores(u, v)  # (B, n)
        return u @ v.T  # (B, n)

    def penalty(self, user: Tensor, item: Tensor) -> Tensor:
        """Per-example squared norm of the id embeddings a batch touches (the towers' weights are not included).

        Args:
            user: (B,) user indices.
            item: (B,) or (B, k) item indices.

        Returns:
            Scalar: mean over the batch of ``|e_u|^2 + sum_i |e_i|^2``.
        """
        per_user = self.user_tower.embedding(user).pow(2).sum(-1)  # (B,)
        per_item = self.item_tower.embedding(item).pow(2).sum(-1)  # (B,) or (B, k)
        if per_item.dim() == 2:
            per_item = per_item.sum(-1)
        return (per_user + per_item).mean()

    @torch.no_grad()
    def user_vectors(self) -> Tensor:
        """(m, d) unit-norm user tower outputs."""
        return F.normalize(self.user_tower.mlp(self.user_tower.embedding.weight), dim=-1)

    @torch.no_grad()
    def item_vectors(self) -> Tensor:
        """(n, d) unit-norm item tower outputs."""
        return F.normalize(self.item_tower.mlp(self.item_tower.embedding.weight), dim=-1)
