"""The pipeline's training stage: build the configured recommender, fit it, export its embeddings.

Part of the pipeline layer (it reads the ``model`` and ``trainer`` config nodes); the models package
itself takes plain arguments.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from rectest.data.bundle import DataBundle
from rectest.data.datamodule import InteractionDataModule
from rectest.models.export import EMBEDDINGS_FOLDER, USERS_FILE, export_embeddings, load_exported
from rectest.models.fit import fit

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


def train_and_export(
    cfg: DictConfig, bundle: DataBundle, run_dir: Path
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Fit ``cfg.model`` on the bundle's split with ``cfg.trainer``; export unit-norm embeddings.

    Returns:
        (users (num_users, d), items (num_items, d), test metrics).
    """
    inter = bundle.interactions
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    net = instantiate(cfg.model.net, num_users=inter.num_users, num_items=inter.num_items)
    task = instantiate(cfg.model.task)(net=net)
    datamodule = InteractionDataModule(
        bundle.split,
        feedback=str(cfg.model.feedback),
        batch_size=int(cfg.model.batch_size),
        num_negatives=int(cfg.model.num_negatives),
        seed=int(cfg.seed),
    )
    metrics = fit(task, datamodule, instantiate(cfg.trainer), run_dir, patience=int(cfg.model.patience))
    export_embeddings(net, inter, run_dir)
    (Path(run_dir) / EMBEDDINGS_FOLDER / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    log.info("trained %s: %s", type(net).__name__, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return load_export(run_dir)
