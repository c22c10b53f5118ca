"""The real ml-100k and ml-latest-small copies reproduce the counts in spec data.md (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rectest.data import load_ml100k_fold, load_movielens, make_split

pytestmark = pytest.mark.slow

FOLD_SIZES = {"u1": (80_000, 20_000), "u5": (80_000, 20_000), "ua": (90_570, 9_430), "ub": (90_570, 9_430)}


def _histogram(rating: np.ndarray) -> dict[float, int]:
    values, counts = np.unique(rating, return_counts=True)
    return {float(v): int(c) for v, c in zip(values, counts, strict=True)}


def test_ml100k_counts(shared_movielens: Path) -> None:
    log = load_movielens("ml-100k", shared_movielens, cache=False)
    assert (len(log), log.num_users, log.num_items) == (100_000, 943, 1_682)
    assert _histogram(log.rating) == {1.0: 6110, 2.0: 11370, 3.0: 27145, 4.0: 34174, 5.0: 21201}
    assert log.user_ids.tolist() == list(range(1, 944)) and log.item_ids.tolist() == list(range(1, 1683))
    assert (log.timestamp.min(), log.timestamp.max()) == (874724710, 893286638)
    assert log.item_titles[log.item_ids.tolist().index(543)] == "Misérables, Les (1995)"
    assert len(set(zip(log.user.tolist(), log.item.tolist(), strict=True))) == 100_000  # no duplicate pairs


def test_ml_latest_small_counts(shared_movielens: Path) -> None:
    log = load_movielens("ml-latest-small", shared_movielens, cache=False)
    assert (len(log), log.num_users, log.num_items) == (100_836, 610, 9_724)
    assert _histogram(log.rating) == {
        0.5: 1370, 1.0: 2811, 1.5: 1791, 2.0: 7551, 2.5: 5550,
        3.0: 20047, 3.5: 13136, 4.0: 26818, 4.5: 8551, 5.0: 13211,
    }  # fmt: skip
    assert (log.timestamp.min(), log.timestamp.max()) == (828124615, 1537799250)
    assert log.item_ids.max() == 193609 and log.item_titles[0] == "Toy Story (1995)"


@pytest.mark.parametrize("fold", list(FOLD_SIZES))
def test_ml100k_folds(shared_movielens: Path, fold: str) -> None:
    split = load_ml100k_fold(fold, shared_movielens, val_fraction=0.1, seed=0, cache=False)
    base, test = FOLD_SIZES[fold]
    assert (len(split.train) + len(split.val), len(split.test)) == (base, test)
    assert len(split.val) == base // 10
    full = load_movielens("ml-100k", shared_movielens, cache=False)
    pairs = lambda p: set(zip(p.user.tolist(), p.item.tolist(), strict=True))  # noqa: E731
    assert pairs(split.train) | pairs(split.val) | pairs(split.test) == pairs(full)
    if fold in ("ua", "ub"):
        assert np.bincount(split.test.user).tolist() == [10] * 943  # 10 test ratings per user


def test_real_temporal_split(shared_movielens: Path) -> None:
    log = load_movielens("ml-100k", shared_movielens, cache=False)
    split = make_split(log, "temporal", leave_last=1, val_fraction=0.0)
    assert len(split.test) == 943 and len(split.val) == 0
    last = np.full(log.num_users, -1)
    np.maximum.at(last, log.user, log.timestamp)
    assert (split.test.timestamp == last[split.test.user]).all()
