"""End-to-end training on tiny logs: near-zero loss, early stopping, determinism, logs and export."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rectest.data.datamodule import InteractionDataModule
from rectest.data.interactions import Split
from rectest.errors import DataError
from rectest.models.export import export_embeddings, load_exported
from rectest.models.fit import fit
from rectest.models.mf import MatrixFactorization
from rectest.models.task import RecommenderTask
from rectest.models.two_tower import TwoTower
from rectest.sim.scoring import cosine_scores


def trainer_factory(max_epochs: int) -> functools.partial:
    return functools.partial(
        pl.Trainer,
        max_epochs=max_epochs,
        accelerator="cpu",
        deterministic=True,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )


def fit_mf(
    split: Split, run_dir: Path, epochs: int = 150, fast: bool = False
) -> tuple[RecommenderTask, dict[str, float]]:
    """MF on a split; ``fast``: the compiled step and the fused optimizer (model=mf_fast's switches)."""
    pl.seed_everything(0, verbose=False)
    net = MatrixFactorization(split.train.num_users, split.train.num_items, dim=4, init_std=0.1, compile=fast)
    task = RecommenderTask(net, "explicit", "mse", lr=0.05, fused=fast)
    dm = InteractionDataModule(split, "explicit", batch_size=64, num_negatives=0, seed=0)
    return task, fit(task, dm, trainer_factory(epochs), run_dir, patience=epochs)


def test_mf_fits_a_low_rank_matrix_to_near_zero_loss(low_rank_split: Split, tmp_path: Path) -> None:
    task, metrics = fit_mf(low_rank_split, tmp_path)
    train = low_rank_split.train
    with torch.no_grad():
        pred = task.net(torch.as_tensor(train.user), torch.as_tensor(train.item))
    train_rmse = (pred - torch.as_tensor(train.rating)).pow(2).mean().sqrt().item()
    spread = float(np.std(train.rating))
    assert train_rmse < 0.05 * spread  # the rank-2 matrix is recovered
    assert metrics["test/rmse"] < 0.05 * spread and metrics["test/mae"] <= metrics["test/rmse"]
    # run folder: TensorBoard scalars under train/ and val/, best and last checkpoints
    events = EventAccumulator(str(next((tmp_path / "tb").rglob("events.out.tfevents*")).parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "val/rmse", "val/mae"} <= tags
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file() and (
        tmp_path / "checkpoints" / "last.ckpt"
    ).is_file()


@pytest.mark.parametrize("fast", [False, True], ids=["mf", "compiled-fused"])
def test_training_is_deterministic_under_a_seed(low_rank_split: Split, tmp_path: Path, fast: bool) -> None:
    a, _ = fit_mf(low_rank_split, tmp_path / "a", epochs=3, fast=fast)
    b, _ = fit_mf(low_rank_split, tmp_path / "b", epochs=3, fast=fast)
    for (name, x), (_, y) in zip(a.net.state_dict().items(), b.net.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("loss", ["bpr", "softmax", "full_softmax"])
def test_two_tower_learns_the_communities(block_split: Split, tmp_path: Path, loss: str) -> None:
    pl.seed_everything(0, verbose=False)
    net = TwoTower(20, 20, dim=4, id_dim=8, hidden=[8])
    task = RecommenderTask(net, "implicit", loss, lr=0.05, temperature=0.2, k=2)
    negatives = 0 if loss == "full_softmax" else 4
    dm = InteractionDataModule(block_split, "implicit", batch_size=32, num_negatives=negatives, seed=0)
    metrics = fit(task, dm, trainer_factory(20), tmp_path, patience=20)
    # at test time a user's 8 train/val items are excluded: its 2 test items are the only in-community
    # candidates among 12, so ranking the community first gives Recall@2 = 1 (random order: 1/6)
    assert metrics["test/recall@2"] > 0.8
    scores = cosine_scores(net.user_vectors(), net.item_vectors())  # (20, 20)
    same = torch.zeros(20, 20, dtype=torch.bool)
    same[:10, :10] = same[10:, 10:] = True
    assert scores[same].mean() > scores[~same].mean() + 0.5


def test_export_writes_unit_vectors_in_id_map_order(low_rank_split: Split, tmp_path: Path) -> None:
    torch.manual_seed(0)
    train = low_rank_split.train
    net = TwoTower(train.num_users, train.num_items, dim=16)
    paths = export_embeddings(net, train, tmp_path)
    assert paths["users"] == tmp_path / "embeddings" / "users.npz" and paths["items"].is_file()
    loaded = load_exported(tmp_path)
    assert np.array_equal(loaded.user_ids, train.user_ids) and np.array_equal(loaded.item_ids, train.item_ids)
    torch.testing.assert_close(loaded.user_vectors.norm(dim=-1), torch.ones(train.num_users))
    torch.testing.assert_close(loaded.item_vectors.norm(dim=-1), torch.ones(train.num_items))
    torch.testing.assert_close(loaded.user_vectors, net.user_vectors())  # row u is user index u
    torch.testing.assert_close(loaded.item_vectors, net.item_vectors())
    assert not list((tmp_path / "embeddings").glob("*.tmp"))


def test_export_rejects_mismatched_id_maps(low_rank_split: Split, tmp_path: Path) -> None:
    net = MatrixFactorization(3, 4, dim=2)
    with pytest.raises(DataError, match="3 x 4"):
        export_embeddings(net, low_rank_split.train, tmp_path)
    with pytest.raises(DataError, match="no exported embeddings"):
        load_exported(tmp_path)
