"""Splits: disjoint, complete, deterministic, and time-respecting where promised."""

from __future__ import annotations

import numpy as np
import pytest

from rectest.data import Interactions, make_split
from rectest.errors import ConfigError, DataError


def _log(seed: int = 0, users: int = 60, with_time: bool = True) -> Interactions:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 40, size=users)  # some users with 1-2 ratings
    user = np.repeat(np.arange(users), counts)
    item = np.concatenate([rng.choice(100, size=c, replace=False) for c in counts])
    ts = rng.integers(0, 50, size=len(user))  # many ties
    return Interactions(
        user=user.astype(np.int64),
        item=item.astype(np.int64),
        rating=rng.random(len(user)).astype(np.float32),
        timestamp=ts.astype(np.int64) if with_time else None,
        user_ids=np.arange(users),
        item_ids=np.arange(100),
        name="toy",
    )


def _keys(part: Interactions) -> list[tuple[int, int]]:
    return list(zip(part.user.tolist(), part.item.tolist(), strict=True))


@pytest.mark.parametrize("method", ["random", "temporal", "global_time"])
def test_disjoint_complete_deterministic(method: str) -> None:
    log = _log()
    split = make_split(log, method, 0.15, 0.2, seed=4)
    parts = [_keys(split.train), _keys(split.val), _keys(split.test)]
    everything = [k for p in parts for k in p]
    assert sorted(everything) == sorted(_keys(log))  # union = all, each row once (pairs are unique)
    again = make_split(log, method, 0.15, 0.2, seed=4)
    assert _keys(again.test) == parts[2] and _keys(again.val) == parts[1]
    for part in (split.train, split.val, split.test):
        assert part.user_ids is log.user_ids and part.item_ids is log.item_ids


def test_random_depends_on_seed_and_fractions_per_user() -> None:
    log = _log()
    a, b = make_split(log, "random", seed=1), make_split(log, "random", seed=2)
    assert _keys(a.test) != _keys(b.test)
    counts = np.bincount(log.user)
    test_counts = np.bincount(a.test.user, minlength=len(counts))
    for u, n in enumerate(counts):
        if n < 3:
            assert test_counts[u] == 0 and (a.train.user == u).sum() == n  # small users stay in train
        else:
            assert test_counts[u] == max(1, int(np.floor(0.1 * n + 0.5)))
            assert (a.train.user == u).sum() >= 1


def test_temporal_puts_later_ratings_in_test() -> None:
    log = _log()
    split = make_split(log, "temporal", 0.1, 0.2, seed=0)
    for u in np.unique(split.test.user):
        train_t = split.train.timestamp[split.train.user == u]
        val_t = split.val.timestamp[split.val.user == u]
        test_t = split.test.timestamp[split.test.user == u]
        assert train_t.max() <= test_t.min()
        if len(val_t):
            assert train_t.max() <= val_t.min() and val_t.max() <= test_t.min()


def test_temporal_leave_last() -> None:
    log = _log()
    split = make_split(log, "temporal", leave_last=2, seed=0)
    counts = np.bincount(log.user)
    test_counts = np.bincount(split.test.user, minlength=len(counts))
    val_counts = np.bincount(split.val.user, minlength=len(counts))
    for u, n in enumerate(counts):
        if n >= 5:
            assert test_counts[u] == 2 and val_counts[u] == 2


def test_global_time_cut() -> None:
    log = _log()
    split = make_split(log, "global_time", 0.1, 0.2)
    assert split.train.timestamp.max() <= split.val.timestamp.min()
    assert split.val.timestamp.max() <= split.test.timestamp.min()
    assert len(split.test) == round(0.2 * len(log)) and len(split.val) == round(0.1 * len(log))


def test_errors() -> None:
    with pytest.raises(DataError, match="toy.*timestamps"):
        make_split(_log(with_time=False), "temporal")
    with pytest.raises(ConfigError, match="load_ml100k_fold"):
        make_split(_log(), "u1")
    with pytest.raises(ConfigError, match="sum"):
        make_split(_log(), "random", 0.6, 0.5)
