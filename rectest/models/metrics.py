"""Evaluation metrics: rating error (explicit) and full-ranking Recall@K / NDCG@K (implicit).

The ranking metrics take one batch of users at a time (their scores over all items, their training items
to exclude and their held-out items), so evaluation memory is ``O(B * n)`` whatever the number of users.
Definitions (as in RecBole): for a user with held-out set T and top-K list L (training items excluded),
``Recall@K = |L & T| / |T|`` and ``NDCG@K = DCG / IDCG`` with ``DCG = sum_{rank r in L, item in T}
1 / log2(r + 1)`` (ranks from 1) and IDCG the DCG of ``min(|T|, K)`` hits at the top. Users without
held-out items are skipped.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rmse(pred: Tensor, target: Tensor) -> Tensor:
    """Root mean squared error of (N,) predictions against (N,) ratings."""
    return (pred - target).pow(2).mean().sqrt()


def mae(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error of (N,) predictions against (N,) ratings."""
    return (pred - target).abs().mean()


def ranking_metrics(scores: Tensor, target: Tensor, exclude: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Per-user Recall@K and NDCG@K of a full ranking.

    Args:
        scores: (B, n) scores of every item.
        target: (B, n) bool, the held-out (relevant) items.
        exclude: (B, n) bool, items removed from the ranking (the user's training items).
        k: list length K.

    Returns:
        recall, ndcg: (B',) each, for the B' users with at least one held-out item.
    """
    n_rel = target.sum(-1)  # (B,)
    keep = n_rel > 0
    scores, target, exclude, n_rel = scores[keep], target[keep], exclude[keep], n_rel[keep]
    masked = scores.masked_fill(exclude, float("-inf"))  # (B', n)
    k = min(k, scores.shape[-1])
    top = masked.topk(k, dim=-1).indices  # (B', K)
    ranked = masked.gather(-1, top).isfinite()  # (B', K) False where fewer than K items remain
    hits = (target.gather(-1, top) & ranked).to(scores.dtype)  # (B', K)
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=scores.dtype, device=scores.device))  # (K,)
    dcg = (hits * discounts).sum(-1)  # (B',)
    ideal_hits = torch.arange(k, device=scores.device).unsqueeze(0) < n_rel.unsqueeze(-1)  # (B', K)
    idcg = (ideal_hits.to(scores.dtype) * discounts).sum(-1)  # (B',)
    recall = hits.sum(-1) / n_rel.to(scores.dtype)
    return recall, dcg / idcg
