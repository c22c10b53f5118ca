"""The pipeline's training stage: build the configured recommender, fit it, export its embeddings.

Part of the pipeline layer (it reads the ``model`` and ``trainer`` config nodes); the models package
itself takes plain arguments.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig

from rectest.config import build
from rectest.data.bundle import DataBundle
from rectest.data.datamodule import InteractionDataModule
from rectest.errors import ConfigError
from rectest.models.export import EMBEDDINGS_FOLDER, USERS_FILE, export_embeddings, load_exported
from rectest.models.fit import fit
from rectest.models.task import LOSS_FULL_SOFTMAX

log = logging.getLogger("rectest")

METRICS_FILE = "test_metrics.json"  # the recommender's test metrics, beside the exported vectors


def has_export(run_dir: Path) -> bool:
    """Whether an earlier (interrupted) attempt of this run already exported its embeddings."""
    return (Path(run_dir) / EMBEDDINGS_FOLDER / USERS_FILE).is_file()


def load_export(run_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The exported unit-norm users (num_users, d), items (num_items, d) and test metrics of a run folder."""
    emb = load_exported(run_dir)
    path = Path(run_dir) / EMBEDDINGS_FOLDER / METRICS_FILE
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    return emb.user_vectors.numpy(), emb.item_vectors.numpy(), metrics


@dataclass
class Plan:
    """A built but untrained recommender: the task (with its net), its data and the Trainer factory."""

    task: pl.LightningModule
    datamodule: InteractionDataModule
    make_trainer: Callable[..., pl.Trainer]
    patience: int


def plan(cfg: DictConfig, bundle: DataBundle) -> Plan:
    """Build ``cfg.model`` and ``cfg.trainer`` for the bundle (cheap; bad arguments fail here, before any work)."""
    inter = bundle.interactions
    if cfg.model.task.get("loss") == LOSS_FULL_SOFTMAX and int(cfg.model.num_negatives) > 0:
        raise ConfigError(
            f"model.num_negatives={cfg.model.num_negatives} with model.task.loss={LOSS_FULL_SOFTMAX}: the full "
            "softmax already scores every item; set model.num_negatives=0"
        )
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    net = build(cfg.model.net, "model.net", num_users=inter.num_users, num_items=inter.num_items)
    task = build(cfg.model.task, "model.task")(net=net)
    datamodule = InteractionDataModule(
        bundle.split,
        feedback=str(cfg.model.feedback),
        batch_size=int(cfg.model.batch_size),
        num_negatives=int(cfg.model.num_negatives),
        seed=int(cfg.seed),
        exclude_positives=bool(cfg.model.exclude_positives),
    )
    return Plan(task, datamodule, build(cfg.trainer, "trainer"), int(cfg.model.patience))


def train_and_export(todo: Plan, bundle: DataBundle, run_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Fit the planned recommender (early stopping on validation) and export unit-norm embeddings.

    Returns:
        (users (num_users, d), items (num_items, d), test metrics).
    """
    metrics = fit(todo.task, todo.datamodule, todo.make_trainer, run_dir, patience=todo.patience)
    net = todo.task.net
    export_embeddings(net, bundle.interactions, run_dir)
    (Path(run_dir) / EMBEDDINGS_FOLDER / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    log.info("trained %s: %s", type(net).__name__, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return load_export(run_dir)
