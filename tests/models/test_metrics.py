"""Ranking and rating metrics against brute-force definitions."""

from __future__ import annotations

import math

import pytest
import torch

from rectest.models.metrics import mae, ranking_metrics, rmse


def brute_force(
    scores: torch.Tensor, target: torch.Tensor, exclude: torch.Tensor, k: int
) -> tuple[list, list]:
    """Recall@K and NDCG@K by sorting each user's candidate list in plain Python."""
    recalls, ndcgs = [], []
    for s, t, e in zip(scores.tolist(), target.tolist(), exclude.tolist(), strict=True):
        relevant = {i for i, flag in enumerate(t) if flag}
        if not relevant:
            continue
        candidates = sorted((i for i in range(len(s)) if not e[i]), key=lambda i: -s[i])[:k]
        hits = [i in relevant for i in candidates]
        dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(relevant), k)))
        recalls.append(sum(hits) / len(relevant))
        ndcgs.append(dcg / idcg)
    return recalls, ndcgs


@pytest.mark.parametrize("k", [1, 3, 10, 40])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_metrics_match_brute_force(k: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    b, n = 17, 30
    scores = torch.randn(b, n, generator=gen, dtype=torch.float64)  # distinct scores: no ties
    exclude = torch.rand(b, n, generator=gen) < 0.3
    target = (torch.rand(b, n, generator=gen) < 0.2) & ~exclude
    target[0] = False  # a user without held-out items is skipped
    recall, ndcg = ranking_metrics(scores, target, exclude, k)
    ref_recall, ref_ndcg = brute_force(scores, target, exclude, k)
    assert len(recall) == len(ref_recall) == b - 1
    torch.testing.assert_close(recall, torch.tensor(ref_recall, dtype=torch.float64))
    torch.testing.assert_close(ndcg, torch.tensor(ref_ndcg, dtype=torch.float64))


def test_perfect_and_worst_rankings() -> None:
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    target = torch.tensor([[True, True, False, False, False, False]])
    none = torch.zeros_like(target)
    recall, ndcg = ranking_metrics(scores, target, none, 2)
    assert recall.item() == 1.0 and ndcg.item() == pytest.approx(1.0)
    recall, ndcg = ranking_metrics(-scores, target, none, 2)
    assert recall.item() == 0.0 and ndcg.item() == 0.0
    # excluding the two best items pushes the targets out of the top 2
    recall, _ = ranking_metrics(scores, target, target.clone(), 2)
    assert recall.item() == 0.0


def test_rmse_mae_closed_form() -> None:
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0])
    target = torch.tensor([2.0, 2.0, 1.0, 4.0])
    assert rmse(pred, target).item() == pytest.approx(math.sqrt((1 + 0 + 4 + 0) / 4))
    assert mae(pred, target).item() == pytest.approx((1 + 0 + 2 + 0) / 4)
