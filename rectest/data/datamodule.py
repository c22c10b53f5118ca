"""Lightning DataModule over a :class:`~rectest.data.interactions.Split`.

Batches are cut from tensors directly (no per-row collation), so an epoch over 20M ratings costs a few
hundred slicing operations.

Explicit feedback: train / val / test batches are ``dict(user (B,), item (B,), rating (B,))``.
Implicit feedback (every row a positive): train batches are ``dict(user (B,), pos (B,), neg (B, k))`` with
``k = num_negatives`` items drawn uniformly (k may be 0 for in-batch or full-softmax training), plus
``seen (2, nnz)``, the (row, item) pairs of each row's user's training items, when ``exclude_positives`` is set
(:func:`pairs_to_mask` makes the (B, n) mask on the loss's device); val / test batches are
``dict(user (B,), target (B, n) bool, exclude (B, n) bool)`` for full ranking, where ``exclude`` marks the
user's training items (and, for test, validation items).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from rectest.data.interactions import Interactions, Split
from rectest.errors import ConfigError

EXPLICIT = "explicit"
IMPLICIT = "implicit"
FEEDBACKS = (EXPLICIT, IMPLICIT)
EVAL_USERS_PER_BATCH = 1024


def _shard() -> tuple[int, int]:
    """(rank, world size) of this process under torch.distributed, (0, 1) otherwise."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _per_rank(total: int, size: int) -> int:
    """An evaluation batch size that gives every data-parallel process at least one batch when it can."""
    world = _shard()[1]
    return max(1, min(size, -(-total // world)))


class _Batches(IterableDataset):
    """Shuffled (or sequential) mini-batches of rating rows; reshuffled with a new seed every epoch.

    Under data-parallel training every process draws the same permutation and takes every world-th batch;
    shuffled (training) epochs drop the last few batches so every process runs the same number of steps.
    """

    def __init__(self, columns: dict[str, Tensor], batch_size: int, seed: int | None) -> None:
        super().__init__()
        self.columns = columns
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.rows = len(next(iter(columns.values())))

    def _starts(self) -> range:
        rank, world = _shard()
        total = (self.rows + self.batch_size - 1) // self.batch_size
        if self.seed is not None:
            total -= total % world
        return range(rank * self.batch_size, total * self.batch_size, world * self.batch_size)

    def __len__(self) -> int:
        return len(self._starts())

    def _order(self) -> Tensor | None:
        if self.seed is None:
            return None
        gen = torch.Generator().manual_seed(self.seed + 7919 * self.epoch)
        self.epoch += 1
        return torch.randperm(self.rows, generator=gen)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        order = self._order()
        for start in self._starts():
            if order is None:
                yield {k: v[start : start + self.batch_size] for k, v in self.columns.items()}
            else:
                idx = order[start : start + self.batch_size]
                yield {k: v.index_select(0, idx) for k, v in self.columns.items()}


def pairs_to_mask(pairs: Tensor, rows: int, num_items: int) -> Tensor:
    """(2, nnz) (row, item) pairs -> (rows, num_items) bool mask, on the pairs' device."""
    mask = torch.zeros(rows, num_items, dtype=torch.bool, device=pairs.device)
    mask[pairs[0], pairs[1]] = True
    return mask


class _CSR:
    """Per-user item sets of a log, for building dense (B, n) masks of a batch of users."""

    def __init__(self, logs: list[Interactions], num_users: int, num_items: int) -> None:
        user = np.concatenate([log.user for log in logs]).astype(np.int64)
        item = np.concatenate([log.item for log in logs]).astype(np.int64)
        order = np.argsort(user, kind="stable")
        self.items = torch.from_numpy(item[order])
        counts = np.bincount(user, minlength=num_users)
        self.indptr = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]))
        self.num_items = num_items

    def pairs(self, users: Tensor) -> Tensor:
        """(B,) user indices -> (2, nnz) (row in the batch, item) of every item of every user."""
        start, end = self.indptr[users], self.indptr[users + 1]  # (B,)
        lengths = end - start
        row = torch.repeat_interleave(torch.arange(len(users)), lengths)  # (nnz,) sorted
        first = lengths.cumsum(0) - lengths  # (B,) each row's first position in the output
        at = torch.arange(int(lengths.sum())) + (start - first)[row]  # (nnz,) positions in self.items
        return torch.stack([row, self.items[at]])

    def dense(self, users: Tensor) -> Tensor:
        """(B,) user indices -> (B, n) bool mask of their items."""
        return pairs_to_mask(self.pairs(users), len(users), self.num_items)


class _NegativeBatches(_Batches):
    """Implicit training batches: positives plus ``k`` uniformly drawn negative items per row, and (with
    ``seen``) the (row, item) pairs of each row's user's training items."""

    def __init__(
        self,
        columns: dict[str, Tensor],
        batch_size: int,
        seed: int,
        num_items: int,
        k: int,
        seen: _CSR | None = None,
    ) -> None:
        super().__init__(columns, batch_size, seed)
        self.num_items = num_items
        self.k = k
        self.seen = seen

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        gen = torch.Generator().manual_seed(self.seed + 104729 * (self.epoch + 1))
        for batch in super().__iter__():
            size = (len(batch["user"]), self.k)
            out = {
                "user": batch["user"],
                "pos": batch["item"],
                "neg": torch.randint(self.num_items, size, generator=gen),
            }
            if self.seen is not None:  # sparse: the (B, n) mask is built where the loss runs
                out["seen"] = self.seen.pairs(batch["user"])  # (2, nnz)
            yield out


class _RankingBatches(IterableDataset):
    """Batches of users who have held-out items, with their target and exclusion masks."""

    def __init__(self, target: _CSR, exclude: _CSR, users_per_batch: int) -> None:
        super().__init__()
        counts = target.indptr[1:] - target.indptr[:-1]
        self.users = torch.nonzero(counts > 0).squeeze(-1)  # (U,)
        self.target, self.exclude = target, exclude
        self.users_per_batch = users_per_batch

    def _starts(self) -> range:
        rank, world = _shard()
        return range(rank * self.users_per_batch, len(self.users), world * self.users_per_batch)

    def __len__(self) -> int:
        return len(self._starts())

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        for start in self._starts():
            users = self.users[start : start + self.users_per_batch]
            yield {"user": users, "target": self.target.dense(users), "exclude": self.exclude.dense(users)}


def _columns(log: Interactions) -> dict[str, Tensor]:
    """The log's columns as tensors (copies: the log's arrays may be read-only views of a cache file)."""
    return {
        "user": torch.tensor(log.user, dtype=torch.long),
        "item": torch.tensor(log.item, dtype=torch.long),
        "rating": torch.tensor(log.rating, dtype=torch.float32),
    }


class InteractionDataModule(pl.LightningDataModule):
    """Train / val / test loaders of a Split for explicit or implicit training.

    Args:
        split: the train / val / test logs (same id maps).
        feedback: "explicit" (rating regression) or "implicit" (every row a positive).
        batch_size: rating rows per training batch.
        num_negatives: uniformly sampled negatives per positive (implicit only; 0 = in-batch only).
        seed: seeds the shuffling and the negative sampling (epoch e uses a seed derived from seed and e).
        exclude_positives: implicit training batches carry ``seen``, the (row, item) pairs of each user's
            training items, so the loss can keep a user's other positives out of its negatives.
    """

    def __init__(
        self,
        split: Split,
        feedback: str,
        batch_size: int,
        num_negatives: int,
        seed: int,
        exclude_positives: bool = False,
    ) -> None:
        super().__init__()
        if feedback not in FEEDBACKS:
            raise ConfigError(f"model.feedback={feedback!r}: expected one of {FEEDBACKS}")
        if batch_size < 1 or num_negatives < 0:
            raise ConfigError(
                f"batch_size={batch_size}, num_negatives={num_negatives}: expected >= 1 and >= 0"
            )
        if len(split.train) == 0:
            raise ConfigError(f"{split.train.name}: the training log is empty")
        self.split = split
        self.feedback = feedback
        self.batch_size = batch_size
        self.num_negatives = num_negatives
        self.seed = seed
        self.exclude_positives = exclude_positives
        self.num_users = split.train.num_users
        self.num_items = split.train.num_items
        self._train: _Batches | None = None

    @property
    def train_mean(self) -> float:
        """Mean training rating (initial global bias of an explicit model)."""
        return float(np.mean(self.split.train.rating))

    def train_dataloader(self) -> DataLoader:
        if self._train is None:  # keep the object so its epoch counter advances across epochs
            cols = _columns(self.split.train)
            if self.feedback == EXPLICIT:
                self._train = _Batches(cols, self.batch_size, self.seed)
            else:
                seen = None
                if self.exclude_positives:
                    seen = _CSR([self.split.train], self.num_users, self.num_items)
                self._train = _NegativeBatches(
                    cols, self.batch_size, self.seed, self.num_items, self.num_negatives, seen
                )
        return DataLoader(self._train, batch_size=None)

    def _eval_loader(self, log: Interactions, exclude: list[Interactions]) -> DataLoader:
        if self.feedback == EXPLICIT:
            size = _per_rank(len(log), max(self.batch_size, 8192))
            return DataLoader(_Batches(_columns(log), size, None), batch_size=None)
        target = _CSR([log], self.num_users, self.num_items)
        seen = _CSR(exclude, self.num_users, self.num_items)
        users = int(((target.indptr[1:] - target.indptr[:-1]) > 0).sum())
        return DataLoader(
            _RankingBatches(target, seen, _per_rank(users, EVAL_USERS_PER_BATCH)), batch_size=None
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.split.val, [self.split.train])

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.split.test, [self.split.train, self.split.val])
