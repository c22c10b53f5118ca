"""Small interaction logs built in code for the model tests."""

from __future__ import annotations

import numpy as np
import pytest

from rectest.data.interactions import Interactions, Split


def make_log(
    user: np.ndarray, item: np.ndarray, rating: np.ndarray, num_users: int, num_items: int
) -> Interactions:
    """An Interactions over ids 100+u and 5000+i (so indices and ids differ)."""
    return Interactions(
        user=np.asarray(user, dtype=np.int64),
        item=np.asarray(item, dtype=np.int64),
        rating=np.asarray(rating, dtype=np.float32),
        timestamp=None,
        user_ids=np.arange(num_users) + 100,
        item_ids=np.arange(num_items) + 5000,
        name="tiny",
    )


@pytest.fixture
def low_rank_split() -> Split:
    """Every rating of a 24 x 18 rank-2 matrix (values in [1, 5]); val/test are 10% samples of train."""
    rng = np.random.default_rng(0)
    m, n = 24, 18
    ratings = 3.0 + rng.normal(size=(m, 2)) @ rng.normal(size=(2, n)) * 0.6  # (m, n)
    ratings = np.clip(ratings, 1.0, 5.0)
    user, item = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    train = make_log(user.ravel(), item.ravel(), ratings.ravel(), m, n)
    rows = rng.choice(len(train), size=len(train) // 10, replace=False)
    return Split(train=train, val=train.take(rows), test=train.take(rows))


@pytest.fixture
def block_split() -> Split:
    """Implicit log with two communities: users 0-9 like items 0-9, users 10-19 like items 10-19.

    Each user has 6 training, 2 validation and 2 test items, all inside its community.
    """
    rng = np.random.default_rng(1)
    parts: dict[str, list[tuple[int, int]]] = {"train": [], "val": [], "test": []}
    for u in range(20):
        block = np.arange(10) + (0 if u < 10 else 10)
        items = rng.permutation(block)
        for name, chosen in (("train", items[:6]), ("val", items[6:8]), ("test", items[8:])):
            parts[name] += [(u, int(i)) for i in chosen]

    def log(pairs: list[tuple[int, int]]) -> Interactions:
        arr = np.array(pairs)
        return make_log(arr[:, 0], arr[:, 1], np.ones(len(arr)), 20, 20)

    return Split(train=log(parts["train"]), val=log(parts["val"]), test=log(parts["test"]))
