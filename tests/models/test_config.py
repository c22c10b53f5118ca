"""The model and trainer config groups compose with the repo's primary config and instantiate."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import rectest.pipeline.compose  # noqa: F401  (registers the plain-node schemas)
from rectest.data.datamodule import pairs_to_mask
from rectest.errors import ConfigError
from rectest.models.mf import MatrixFactorization
from rectest.models.task import RecommenderTask
from rectest.models.two_tower import TwoTower
from rectest.pipeline import training
from rectest.pipeline.compose import build_spec

CONF = Path(__file__).resolve().parents[2] / "conf"


def compose_with(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize(
    ("option", "net_type", "feedback", "loss"),
    [
        ("mf", MatrixFactorization, "explicit", "mse"),
        ("mf_fast", MatrixFactorization, "explicit", "mse"),
        ("mf_bpr", MatrixFactorization, "implicit", "bpr"),
        ("mf_softmax", MatrixFactorization, "implicit", "softmax"),
        ("two_tower", TwoTower, "implicit", "full_softmax"),
    ],
)
def test_model_option_instantiates(option: str, net_type: type, feedback: str, loss: str) -> None:
    cfg = compose_with(f"model={option}", "model.dim=8")
    for key in ("dim", "feedback", "batch_size", "num_negatives", "patience"):
        assert key in cfg.model
    net = instantiate(cfg.model.net, num_users=5, num_items=7)
    assert isinstance(net, net_type)
    task = instantiate(cfg.model.task)(net=net)
    assert isinstance(task, RecommenderTask)
    assert (task.feedback, task.hparams.loss) == (feedback, loss) == (cfg.model.feedback, loss)
    assert "net" not in task.hparams
    assert net.user_vectors().shape == (5, 8) and net.item_vectors().shape == (7, 8)
    scores = net.score_all(torch.arange(5))
    assert scores.shape == (5, 7)


def test_unfilled_sizes_fail_loudly() -> None:
    cfg = compose_with("model=mf")
    with pytest.raises(Exception, match="num_users"):
        instantiate(cfg.model.net)


def test_misspelt_net_argument_fails() -> None:
    cfg = compose_with("model=two_tower", "+model.net.widths=[8]")
    with pytest.raises(Exception, match="widths"):
        instantiate(cfg.model.net, num_users=2, num_items=2)


@pytest.mark.parametrize("option", ["default", "cpu", "gpu", "ddp"])
def test_trainer_options_are_partial_trainers(option: str) -> None:
    cfg = compose_with(f"trainer={option}", "trainer.max_epochs=1")
    assert cfg.trainer.max_epochs == 1 and cfg.trainer._partial_
    if option in ("default", "cpu"):
        trainer = instantiate(cfg.trainer)(logger=False, enable_checkpointing=False)
        assert isinstance(trainer, pl.Trainer) and trainer.max_epochs == 1
    if option == "cpu":
        assert cfg.trainer.accelerator == "cpu"
    if option == "ddp":
        assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 2


@pytest.mark.parametrize("option", ["mf_bpr", "mf_softmax", "two_tower"])
def test_the_training_plan_hands_exclude_positives_to_the_batches(option: str) -> None:
    cfg = compose_with(f"model={option}", "model.dim=4", "data.n_users=20", "data.n_creators=12")
    cfg.data.ratings_per_user = 6
    todo = training.plan(build_spec(cfg), build_spec(cfg).data())
    dm = todo.datamodule
    assert dm.exclude_positives is bool(cfg.model.exclude_positives)
    batch = next(iter(dm.train_dataloader()))
    assert ("seen" in batch) is dm.exclude_positives
    if dm.exclude_positives:  # every row's positive is among its user's seen items
        seen = pairs_to_mask(batch["seen"], len(batch["user"]), dm.num_items)
        assert seen[torch.arange(len(batch["pos"])), batch["pos"]].all()
    assert torch.isfinite(todo.task._implicit_loss(batch))


def test_sampled_negatives_with_the_full_softmax_are_refused() -> None:
    cfg = compose_with("model=two_tower", "model.num_negatives=8", "data.n_users=20", "data.n_creators=12")
    cfg.data.ratings_per_user = 6
    with pytest.raises(ConfigError, match="num_negatives=0"):
        training.plan(build_spec(cfg), build_spec(cfg).data())
