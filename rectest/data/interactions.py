"""The interaction log every loader returns and every model consumes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("rectest")


@dataclass(frozen=True)
class Interactions:
    """A log of (user, item, rating[, timestamp]) events with contiguous indices.

    Indices are contiguous (``0..num_users-1``, ``0..num_items-1``); the id maps keep the original ids:
    ``user_ids[u]`` is the original id of user index ``u``.

    Attributes:
        user: (N,) int64 user indices.
        item: (N,) int64 item indices.
        rating: (N,) float32 ratings (explicit feedback; implicit protocols treat every row as a positive).
        timestamp: (N,) int64 Unix seconds, or None when the source has no time.
        user_ids: (num_users,) original user ids, in index order.
        item_ids: (num_items,) original item ids, in index order.
        item_titles: (num_items,) titles in index order, or None.
        name: where the log came from (release name or file path), used in messages.
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray | None
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_titles: np.ndarray | None = None
    name: str = field(default="interactions")

    @property
    def num_users(self) -> int:
        return int(len(self.user_ids))

    @property
    def num_items(self) -> int:
        return int(len(self.item_ids))

    def __len__(self) -> int:
        return int(len(self.user))

    def take(self, rows: np.ndarray) -> Interactions:
        """Return the rows selected by an index or boolean array, keeping the same id maps."""
        return Interactions(
            user=self.user[rows],
            item=self.item[rows],
            rating=self.rating[rows],
            timestamp=None if self.timestamp is None else self.timestamp[rows],
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            item_titles=self.item_titles,
            name=self.name,
        )


@dataclass(frozen=True)
class Split:
    """Train / validation / test logs over the same id maps (``val`` or ``test`` may be empty)."""

    train: Interactions
    val: Interactions
    test: Interactions


def deduplicate(interactions: Interactions) -> Interactions:
    """One row per (user, item) pair: the latest (by timestamp; among equal or missing timestamps, the
    last in file order), for explicit and implicit feedback alike (a re-rating replaces the old rating; an
    implicit protocol needs one positive per pair). Every loader calls it, so a duplicated pair can never
    sit in both the training and the test split. Dropped rows are reported in a warning.

    Returns:
        ``interactions`` itself when it has no duplicates, else a log of the kept rows in their order.
    """
    n = len(interactions)
    if n == 0:
        return interactions
    pair = interactions.user * max(1, interactions.num_items) + interactions.item  # (N,) one key per pair
    order = (
        np.arange(n) if interactions.timestamp is None else np.argsort(interactions.timestamp, kind="stable")
    )
    # the last occurrence of each key in `order` is the latest row of its pair
    reversed_keys = pair[order][::-1]
    _, first_from_end = np.unique(reversed_keys, return_index=True)
    if len(first_from_end) == n:
        return interactions
    kept = np.sort(order[n - 1 - first_from_end])
    log.warning(
        "%s: dropped %d duplicate (user, item) rows of %d; kept the latest rating of each pair",
        interactions.name,
        n - len(kept),
        n,
    )
    return interactions.take(kept)


def most_rated(interactions: Interactions, n: int) -> np.ndarray:
    """Indices of the ``n`` most-rated items (ties broken by index), in descending count order: the
    creators of ``sim.creators=most_rated``, and the items the uniformity loss spreads."""
    counts = np.bincount(interactions.item, minlength=interactions.num_items)
    return np.lexsort((np.arange(interactions.num_items), -counts))[: min(n, interactions.num_items)]
