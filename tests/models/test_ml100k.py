"""Acceptance on the real MovieLens-100K (slow): the shipped configs meet the issue's bars.

Protocols:
- explicit: predefined folds u1..u5; train on a random 95% of uX.base, early-stop on the other 5%,
  test RMSE on uX.test; the bar is the mean over the five folds <= 0.915.
- implicit (BPR-MF): every rating a positive; per-user random 80/10/10 split (seed 0); full ranking of all
  items with the user's training and validation items excluded. The issue's bar is Recall@10 >= 0.25
  (RecBole's published BPR: 0.252); the shipped BPR config (16 negatives per positive) measured 0.2518.
  The two-tower model is left out of the slow suite (see the models report for its numbers and command).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import rectest.config  # noqa: F401  (registers the plain-node schemas)
from rectest.data.datamodule import InteractionDataModule
from rectest.data.interactions import Split
from rectest.data.movielens import load_ml100k_fold, load_movielens
from rectest.data.splits import make_split
from rectest.models.fit import fit

pytestmark = pytest.mark.slow
FOLDS = ("u1", "u2", "u3", "u4", "u5")
RMSE_BAR = 0.915
RECALL_BAR = 0.25
CONF = Path(__file__).resolve().parents[2] / "conf"


def train_config(option: str, split: Split, run_dir: Path) -> dict[str, float]:
    """Fit the shipped ``conf/model/<option>.yaml`` on a split (CPU trainer, seed 0); return test metrics."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"model={option}", "trainer=cpu"])
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    pl.seed_everything(0, verbose=False)
    net = instantiate(cfg.model.net, num_users=split.train.num_users, num_items=split.train.num_items)
    task = instantiate(cfg.model.task)(net=net)
    dm = InteractionDataModule(
        split, str(cfg.model.feedback), int(cfg.model.batch_size), int(cfg.model.num_negatives), 0
    )
    make_trainer = functools.partial(instantiate(cfg.trainer), enable_progress_bar=False)
    return fit(task, dm, make_trainer, run_dir, patience=int(cfg.model.patience))


def test_mf_rmse_over_the_five_predefined_folds(shared_movielens: Path, tmp_path: Path) -> None:
    rmses = []
    for fold in FOLDS:
        split = load_ml100k_fold(fold, shared_movielens, val_fraction=0.05, cache=False)
        rmses.append(train_config("mf", split, tmp_path / fold)["test/rmse"])
    mean = sum(rmses) / len(rmses)
    print("ml-100k MF test RMSE per fold:", [round(r, 4) for r in rmses], "mean", round(mean, 4))
    assert mean <= RMSE_BAR, rmses


@pytest.mark.parametrize("option", ["mf_bpr"])
def test_implicit_recall_at_10(shared_movielens: Path, tmp_path: Path, option: str) -> None:
    full = load_movielens("ml-100k", shared_movielens, cache=False)
    split = make_split(full, "random", val_fraction=0.1, test_fraction=0.1, seed=0)
    metrics = train_config(option, split, tmp_path)
    print(f"ml-100k {option}:", metrics)
    assert metrics["test/recall@10"] >= RECALL_BAR
    assert 0 < metrics["test/ndcg@10"] <= 1
