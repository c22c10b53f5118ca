"""Turn original ids into contiguous indices (ids sorted ascending) and build :class:`Interactions`."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from rectest.data.interactions import Interactions
from rectest.data.parsers import ITEM, RATING, TIMESTAMP, USER

# Dense lookup tables are used while the largest id is at most this many times the row count (plus slack).
_DENSE_FACTOR = 4
_DENSE_SLACK = 1 << 20


def contiguous(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map ids to ``0..K-1`` in ascending id order.

    Args:
        ids: (N,) ids of any sortable dtype.

    Returns:
        ``(index, unique)``: (N,) int64 indices and (K,) the sorted distinct ids, ``unique[index] == ids``.
    """
    if (
        ids.dtype.kind in "iu"
        and len(ids)
        and ids.min() >= 0
        and ids.max() < _DENSE_FACTOR * len(ids) + _DENSE_SLACK
    ):
        present = np.bincount(ids) > 0  # O(N + max id): much faster than sorting 20M ids
        unique = np.flatnonzero(present).astype(ids.dtype)
        lookup = np.cumsum(present, dtype=np.int64) - 1
        return lookup[ids], unique
    unique, index = np.unique(ids, return_inverse=True)
    return index.astype(np.int64).reshape(-1), unique


def lookup(ids: np.ndarray, unique: np.ndarray) -> np.ndarray:
    """Indices of ``ids`` (M,) in the sorted id map ``unique`` (K,); -1 where an id is absent."""
    pos = np.searchsorted(unique, ids).clip(0, max(len(unique) - 1, 0))
    found = len(unique) > 0 and unique[pos] == ids
    return np.where(found, pos, -1).astype(np.int64)


def from_table(table: pa.Table, name: str, titles: dict[int, str] | None = None) -> Interactions:
    """Build :class:`Interactions` from a ratings table with original ids.

    Args:
        table: columns user, item, rating, timestamp (see ``parsers.RATING_SCHEMA``), N rows.
        name: where the log came from.
        titles: ``{item id: title}``, or None.
    """
    user, user_ids = contiguous(table.column(USER).to_numpy())
    item, item_ids = contiguous(table.column(ITEM).to_numpy())
    item_titles = None
    if titles is not None:
        item_titles = np.array([titles.get(int(i), "") for i in item_ids], dtype=object)
    timestamp = table.column(TIMESTAMP).to_numpy() if TIMESTAMP in table.column_names else None
    return Interactions(
        user=user,
        item=item,
        rating=table.column(RATING).to_numpy().astype(np.float32, copy=False),
        timestamp=None if timestamp is None else timestamp.astype(np.int64, copy=False),
        user_ids=user_ids,
        item_ids=item_ids,
        item_titles=item_titles,
        name=name,
    )
