"""The interaction log every loader returns and every model consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
