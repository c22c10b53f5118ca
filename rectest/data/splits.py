"""Train / validation / test splits of an interaction log (deterministic under a seed).

Methods:
    random: per user, a random ``test_fraction`` of their ratings to test and ``val_fraction`` to val.
    temporal: per user, the latest ratings to test (``leave_last`` of them, or the last ``test_fraction``)
        and the ones just before to val.
    global_time: one global time cut; the latest ``test_fraction`` of all ratings to test, the
        ``val_fraction`` before them to val.

Users with fewer than :data:`MIN_RATINGS_TO_SPLIT` ratings keep them all in train; every other user
keeps at least one training rating. Ties in time are broken by a seeded random order.
"""

from __future__ import annotations

import numpy as np

from rectest.data.interactions import Interactions, Split
from rectest.errors import ConfigError, DataError

RANDOM, TEMPORAL, GLOBAL_TIME = "random", "temporal", "global_time"
METHODS = (RANDOM, TEMPORAL, GLOBAL_TIME)
MIN_RATINGS_TO_SPLIT = 3
TRAIN, VAL, TEST = 0, 1, 2


def _check(method: str, val_fraction: float, test_fraction: float, leave_last: int | None) -> None:
    if method not in METHODS:
        hint = " (ml-100k folds u1..u5, ua, ub: use load_ml100k_fold)" if method.startswith("u") else ""
        raise ConfigError(f"split method {method!r} is unknown; expected one of {', '.join(METHODS)}{hint}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction={val_fraction}, test_fraction={test_fraction}: each must be in [0, 1) and their sum < 1"
        )
    if leave_last is not None and leave_last < 1:
        raise ConfigError(f"leave_last={leave_last} must be a positive integer or null")


def _ranks(user: np.ndarray, key: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each row within its user, latest-first by ``key`` (ties broken at random).

    Returns:
        ``(rank, count)``: (N,) 0 for the user's latest row, and (N,) the user's number of rows.
    """
    shuffle = rng.permutation(len(user))  # (N,) random tie-break
    order = shuffle[np.lexsort((-key[shuffle], user[shuffle]))]  # (N,) by user, then latest first
    count = np.bincount(user)[user]  # (N,)
    starts = np.searchsorted(user[order], user[order])  # first position of each row's user in `order`
    rank = np.empty(len(user), dtype=np.int64)
    rank[order] = np.arange(len(user)) - starts
    return rank, count


def _per_user(rank: np.ndarray, count: np.ndarray, n_test: np.ndarray, n_val: np.ndarray) -> np.ndarray:
    """Part of each row: rank < n_test -> test, next n_val -> val, rest train; small users all train."""
    eligible = count >= MIN_RATINGS_TO_SPLIT
    n_test = np.minimum(n_test, count - 1)  # keep at least one training rating
    n_val = np.minimum(n_val, count - 1 - n_test)
    part = np.full(len(rank), TRAIN, dtype=np.int8)
    part[eligible & (rank < n_test + n_val)] = VAL
    part[eligible & (rank < n_test)] = TEST
    return part


def _share(fraction: float, count: np.ndarray) -> np.ndarray:
    """Rows a user gives to a part: round(fraction * count), at least 1 when fraction > 0."""
    n = np.floor(fraction * count + 0.5).astype(np.int64)
    return np.maximum(n, 1) if fraction > 0 else n


def _global(
    key: np.ndarray, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    n = len(key)
    shuffle = rng.permutation(n)
    order = shuffle[np.argsort(key[shuffle], kind="stable")]  # (N,) earliest first, random among ties
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    part = np.full(n, TRAIN, dtype=np.int8)
    part[order[n - n_test - n_val : n - n_test]] = VAL
    part[order[n - n_test :]] = TEST
    return part


def make_split(
    interactions: Interactions,
    method: str,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    leave_last: int | None = None,
    seed: int = 0,
) -> Split:
    """Split a log into train / val / test over the same id maps.

    Args:
        interactions: the log (N rows).
        method: ``random``, ``temporal`` or ``global_time`` (see the module docstring).
        val_fraction: share of each user's (or, for global_time, of all) ratings for validation.
        test_fraction: share for test.
        leave_last: temporal only: the last ``leave_last`` ratings of each user to test and the
            ``leave_last`` before them to val (when ``val_fraction > 0``), instead of fractions.
        seed: seeds the random draw and tie-breaking.

    Returns:
        Split whose three parts are disjoint and together hold every row once.

    Raises:
        ConfigError: unknown method, bad fractions. DataError: time-based split of a log with no timestamps.
    """
    _check(method, val_fraction, test_fraction, leave_last)
    rng = np.random.default_rng(seed)
    if method != RANDOM and interactions.timestamp is None:
        raise DataError(
            f"{interactions.name}: has no timestamps; the {method!r} split needs them (use 'random')"
        )
    if method == GLOBAL_TIME:
        part = _global(interactions.timestamp, val_fraction, test_fraction, rng)  # type: ignore[arg-type]
    else:
        key = rng.random(len(interactions)) if method == RANDOM else interactions.timestamp
        rank, count = _ranks(interactions.user, key, rng)  # type: ignore[arg-type]
        if method == TEMPORAL and leave_last is not None:
            n_test = np.full(len(rank), leave_last)
            n_val = np.full(len(rank), leave_last if val_fraction > 0 else 0)
        else:
            n_test, n_val = _share(test_fraction, count), _share(val_fraction, count)
        part = _per_user(rank, count, n_test, n_val)
    return Split(
        train=interactions.take(part == TRAIN),
        val=interactions.take(part == VAL),
        test=interactions.take(part == TEST),
    )
