"""The implicit losses equal their textbook formulas, computed term by term on a table of known scores.

With ``seen`` (each user's training items) in the batch, a user's other items are never its negatives: the
formulas below skip them explicitly.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from rectest.errors import ConfigError
from rectest.models.mf import MatrixFactorization
from rectest.models.task import RecommenderTask

TEMPERATURE = 0.5


class TableNet(nn.Module):
    """A 'network' whose score of (u, i) is entry S[u, i] of a fixed table (the losses' only input)."""

    def __init__(self, scores: Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(scores.clone())

    def forward(self, user: Tensor, item: Tensor) -> Tensor:
        return self.table[user.unsqueeze(-1), item] if item.dim() == 2 else self.table[user, item]

    def score_matrix(self, user: Tensor, item: Tensor) -> Tensor:
        return self.table[user][:, item]

    def score_all(self, user: Tensor) -> Tensor:
        return self.table[user]

    @property
    def num_items(self) -> int:
        return self.table.shape[1]


@pytest.fixture()
def scores() -> Tensor:
    return torch.randn(4, 6, generator=torch.Generator().manual_seed(3))  # (m=4 users, n=6 items)


BATCH = {
    "user": torch.tensor([0, 2, 3, 2]),
    "pos": torch.tensor([1, 4, 1, 0]),  # item 1 is the positive of two rows: an accidental hit in-batch
    "neg": torch.tensor([[2, 5], [0, 3], [4, 4], [1, 5]]),
}


SEEN_ITEMS = {0: {1, 5}, 2: {4, 0, 3}, 3: {1}}  # each user's training items (users of BATCH)
SEEN = torch.zeros(4, 6, dtype=torch.bool)
for _u, _items in SEEN_ITEMS.items():
    SEEN[_u, list(_items)] = True


def loss_of(scores: Tensor, loss: str, in_batch: bool = False, seen: bool = False) -> float:
    task = RecommenderTask(TableNet(scores), "implicit", loss, temperature=TEMPERATURE, in_batch=in_batch)
    batch = {**BATCH, "seen": torch.nonzero(SEEN[BATCH["user"]]).T} if seen else BATCH  # (2, nnz) pairs
    return float(task._implicit_loss(batch))


def rows(key: str) -> list:
    return BATCH[key].tolist()


def softmax_term(scores: Tensor, u: int, p: int, negatives: list[int]) -> float:
    """-log of the positive's softmax probability against the given negatives (scores / temperature)."""
    logits = [scores[u, i].item() / TEMPERATURE for i in [p, *negatives]]
    return -logits[0] + math.log(sum(math.exp(x) for x in logits))


def not_seen(u: int, items: list[int], seen: bool) -> list[int]:
    return [i for i in items if not (seen and i in SEEN_ITEMS[u])]


@pytest.mark.parametrize("seen", [False, True])
def test_bpr_is_the_mean_log_sigmoid_of_score_gaps(scores: Tensor, seen: bool) -> None:
    terms = [
        -math.log(1 / (1 + math.exp(-(scores[u, p] - scores[u, j]).item() / TEMPERATURE)))
        for u, p, negs in zip(rows("user"), rows("pos"), rows("neg"), strict=True)
        for j in not_seen(u, negs, seen)
    ]
    assert loss_of(scores, "bpr", seen=seen) == pytest.approx(sum(terms) / len(terms), rel=1e-5)


@pytest.mark.parametrize("seen", [False, True])
def test_sampled_softmax_is_the_positive_against_its_negatives(scores: Tensor, seen: bool) -> None:
    terms = [
        softmax_term(scores, u, p, not_seen(u, negs, seen))
        for u, p, negs in zip(rows("user"), rows("pos"), rows("neg"), strict=True)
    ]
    assert loss_of(scores, "softmax", seen=seen) == pytest.approx(sum(terms) / len(terms), rel=1e-5)


@pytest.mark.parametrize("seen", [False, True])
def test_in_batch_softmax_skips_accidental_hits(scores: Tensor, seen: bool) -> None:
    terms = []
    for b, (u, p) in enumerate(zip(rows("user"), rows("pos"), strict=True)):
        others = [q for c, q in enumerate(rows("pos")) if c != b and q != p]  # the same item is no negative
        negatives = not_seen(u, others, seen) + not_seen(u, rows("neg")[b], seen)
        terms.append(softmax_term(scores, u, p, negatives))
    got = loss_of(scores, "softmax", in_batch=True, seen=seen)
    assert got == pytest.approx(sum(terms) / len(terms), rel=1e-5)


@pytest.mark.parametrize("seen", [False, True])
def test_full_softmax_is_the_positive_against_the_whole_catalogue(scores: Tensor, seen: bool) -> None:
    terms = []
    for u, p in zip(rows("user"), rows("pos"), strict=True):
        negatives = not_seen(u, [i for i in range(scores.shape[1]) if i != p], seen)
        terms.append(softmax_term(scores, u, p, negatives))
    assert loss_of(scores, "full_softmax", seen=seen) == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_full_softmax_falls_when_the_positive_rises(scores: Tensor) -> None:
    higher = scores.clone()
    higher[0, 1] += 1.0  # row 0's positive
    assert loss_of(higher, "full_softmax") < loss_of(scores, "full_softmax")


@pytest.mark.parametrize("loss", ["bpr", "full_softmax"])
def test_in_batch_needs_the_sampled_softmax(scores: Tensor, loss: str) -> None:
    with pytest.raises(ConfigError, match="in_batch"):
        RecommenderTask(TableNet(scores), "implicit", loss, in_batch=True)


def test_fused_optimizer_refuses_sparse_adam(scores: Tensor) -> None:
    with pytest.raises(ConfigError, match="fused"):
        RecommenderTask(TableNet(scores), "implicit", "bpr", optimizer="sparse_adam", fused=True)


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_fused_optimizer_refuses_sparse_embeddings(optimizer: str) -> None:
    net = MatrixFactorization(4, 6, dim=2, sparse=True)
    with pytest.raises(ConfigError, match="fused"):
        RecommenderTask(net, "implicit", "bpr", optimizer=optimizer, fused=True)


@pytest.mark.parametrize("exclude", [False, True, "shuffled"])
@pytest.mark.parametrize("t", [0.2, 0.005])
def test_the_fused_full_softmax_equals_the_dense_cross_entropy(exclude, t: float, monkeypatch) -> None:
    """Value and gradients of the chunked, fused loss against ``F.cross_entropy`` on the dense masked scores,
    with chunks smaller than the batch, positives among the seen items or not, the excluded pairs in row order or
    not; scores up to 1 / t = 5 (exp
    without the row maximum) and 200 (beyond ``EXP_LIMIT``: the row maximum subtracted)."""
    import rectest.models.full_softmax as fused

    monkeypatch.setattr(fused, "CHUNK_ELEMENTS", 50)  # 1 row of 40 items per chunk: every boundary crossed
    g = torch.Generator().manual_seed(5)
    B, n, d, h = 7, 40, 5, 6
    users = torch.nn.functional.normalize(torch.randn(B, d, generator=g, dtype=torch.float64), dim=1)
    items = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    seen_items = torch.stack([torch.randperm(n, generator=g)[:h] for _ in range(B)])  # (B, h)
    pos = torch.where(torch.arange(B) % 2 == 0, seen_items[:, 0], torch.randint(n, (B,), generator=g))
    pairs = torch.stack([torch.arange(B).repeat_interleave(h), seen_items.reshape(-1)]) if exclude else None
    if exclude == "shuffled":  # pairs not grouped by row (the datamodule's are): sorted by the loss
        pairs = pairs[:, torch.randperm(B * h, generator=g)]
    u1, v1 = users.clone().requires_grad_(True), items.clone().requires_grad_(True)
    u2, v2 = users.clone().requires_grad_(True), items.clone().requires_grad_(True)
    got = fused.full_softmax_loss(u1, v1, pos, t, pairs)
    logits = u2 @ v2.T / t
    if exclude:
        others = torch.zeros(B, n, dtype=torch.bool)
        others[pairs[0], pairs[1]] = True
        others[torch.arange(B), pos] = False
        logits = logits.masked_fill(others, float("-inf"))
    want = torch.nn.functional.cross_entropy(logits, pos)
    (got * 3.0).backward()  # an upstream gradient other than 1
    (want * 3.0).backward()
    assert float(got) == pytest.approx(float(want), rel=1e-12)
    torch.testing.assert_close(u1.grad, u2.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(v1.grad, v2.grad, rtol=1e-10, atol=1e-12)
