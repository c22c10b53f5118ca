"""InteractionDataModule: batch contents, epoch coverage, seeding and ranking masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rectest.data.datamodule import InteractionDataModule, pairs_to_mask
from rectest.data.interactions import Split
from rectest.errors import ConfigError


def epoch(dm: InteractionDataModule) -> list[dict[str, torch.Tensor]]:
    return list(dm.train_dataloader())


def test_explicit_epoch_covers_every_row_once(low_rank_split: Split) -> None:
    dm = InteractionDataModule(low_rank_split, "explicit", batch_size=50, num_negatives=0, seed=3)
    batches = epoch(dm)
    assert len(batches) == len(dm.train_dataloader()) == -(-len(low_rank_split.train) // 50)
    user = torch.cat([b["user"] for b in batches])
    item = torch.cat([b["item"] for b in batches])
    rating = torch.cat([b["rating"] for b in batches])
    train = low_rank_split.train
    got = sorted(zip(user.tolist(), item.tolist(), rating.tolist(), strict=True))
    want = sorted(zip(train.user.tolist(), train.item.tolist(), train.rating.tolist(), strict=True))
    assert got == want
    assert user.tolist() != train.user.tolist()  # shuffled


def test_seed_fixes_the_order_and_epochs_differ(low_rank_split: Split) -> None:
    a = InteractionDataModule(low_rank_split, "implicit", batch_size=64, num_negatives=3, seed=5)
    b = InteractionDataModule(low_rank_split, "implicit", batch_size=64, num_negatives=3, seed=5)
    first_a, first_b = epoch(a), epoch(b)
    for x, y in zip(first_a, first_b, strict=True):
        assert all(torch.equal(x[key], y[key]) for key in ("user", "pos", "neg"))
    second_a = epoch(a)
    assert not torch.equal(first_a[0]["user"], second_a[0]["user"])
    c = InteractionDataModule(low_rank_split, "implicit", batch_size=64, num_negatives=3, seed=6)
    assert not torch.equal(first_a[0]["user"], epoch(c)[0]["user"])


def test_implicit_batches_have_k_uniform_negatives(low_rank_split: Split) -> None:
    dm = InteractionDataModule(low_rank_split, "implicit", batch_size=128, num_negatives=4, seed=0)
    negs = []
    for batch in epoch(dm) + epoch(dm) + epoch(dm):
        assert batch["neg"].shape == (len(batch["user"]), 4)
        assert batch["pos"].shape == batch["user"].shape
        negs.append(batch["neg"].ravel())
    counts = torch.bincount(torch.cat(negs), minlength=dm.num_items).double()  # (n,)
    expected = counts.sum() / dm.num_items
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 60  # chi-square with 17 dof: P(> 60) < 1e-6 under uniform sampling


def test_seen_masks_are_each_users_training_items(block_split: Split) -> None:
    train = block_split.train
    items_of: dict[int, set[int]] = {}
    for u, i in zip(train.user.tolist(), train.item.tolist(), strict=True):
        items_of.setdefault(u, set()).add(i)
    dm = InteractionDataModule(block_split, "implicit", 16, 2, seed=0, exclude_positives=True)
    for batch in epoch(dm):
        seen = pairs_to_mask(batch["seen"], len(batch["user"]), dm.num_items)  # (B, n)
        for row, u in zip(seen, batch["user"].tolist(), strict=True):
            assert set(torch.nonzero(row).flatten().tolist()) == items_of[u]
        assert seen[torch.arange(len(batch["pos"])), batch["pos"]].all()  # a positive is seen
    assert "seen" not in epoch(InteractionDataModule(block_split, "implicit", 16, 2, seed=0))[0]


def test_ranking_masks_match_the_logs(block_split: Split) -> None:
    dm = InteractionDataModule(block_split, "implicit", batch_size=16, num_negatives=1, seed=0)
    for loader, targets, seen in (
        (dm.val_dataloader(), block_split.val, [block_split.train]),
        (dm.test_dataloader(), block_split.test, [block_split.train, block_split.val]),
    ):
        batches = list(loader)
        users = torch.cat([b["user"] for b in batches])
        assert sorted(users.tolist()) == sorted(set(targets.user.tolist()))
        target = torch.cat([b["target"] for b in batches])
        exclude = torch.cat([b["exclude"] for b in batches])
        want_target = np.zeros((20, 20), dtype=bool)
        want_target[targets.user, targets.item] = True
        want_exclude = np.zeros((20, 20), dtype=bool)
        for log in seen:
            want_exclude[log.user, log.item] = True
        assert np.array_equal(target.numpy(), want_target[users.numpy()])
        assert np.array_equal(exclude.numpy(), want_exclude[users.numpy()])


def test_explicit_eval_batches_are_the_log(low_rank_split: Split) -> None:
    dm = InteractionDataModule(low_rank_split, "explicit", batch_size=8, num_negatives=0, seed=0)
    rating = torch.cat([b["rating"] for b in dm.test_dataloader()])
    assert np.array_equal(rating.numpy(), low_rank_split.test.rating)
    assert dm.train_mean == pytest.approx(float(low_rank_split.train.rating.mean()))


@pytest.mark.parametrize(
    ("feedback", "batch_size", "k"), [("ratings", 8, 0), ("explicit", 0, 0), ("implicit", 8, -1)]
)
def test_bad_arguments_raise_config_error(
    low_rank_split: Split, feedback: str, batch_size: int, k: int
) -> None:
    with pytest.raises(ConfigError):
        InteractionDataModule(low_rank_split, feedback, batch_size=batch_size, num_negatives=k, seed=0)


@pytest.mark.parametrize("feedback", ["explicit", "implicit"])
def test_every_data_parallel_rank_gets_evaluation_batches(
    low_rank_split: Split, feedback, monkeypatch
) -> None:
    """A validation log smaller than one default batch is still split across 2 ranks, covering every row once."""
    import rectest.data.datamodule as dmod

    dm = InteractionDataModule(low_rank_split, feedback, batch_size=50, num_negatives=1, seed=0)
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr(dmod, "_shard", lambda rank=rank: (rank, 2))
        batches = list(dm.val_dataloader())
        assert batches, f"rank {rank} got no validation batch"
        key = "item" if feedback == "explicit" else "user"
        seen += [
            (int(u), int(i)) for b in batches for u, i in zip(b["user"], b.get(key, b["user"]), strict=True)
        ]
    if feedback == "explicit":
        val = low_rank_split.val
        assert sorted(seen) == sorted(zip(val.user.tolist(), val.item.tolist(), strict=True))
    else:
        assert len({u for u, _ in seen}) == len(seen) == len(set(low_rank_split.val.user.tolist()))
