"""The pipeline's training stage: build the specified recommender, fit it, export its embeddings.

Seeding is scoped: the net is built and fitted inside ``torch.random.fork_rng`` from ``spec.seed``, so the
same seed gives the same weights and the caller's random state is left as it was.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException

from rectest.data.bundle import DataBundle
from rectest.data.datamodule import InteractionDataModule
from rectest.data.interactions import most_rated
from rectest.errors import ConfigError, Interrupted
from rectest.models.export import EMBEDDINGS_FOLDER, USERS_FILE, export_embeddings, load_exported
from rectest.models.fit import fit
from rectest.models.task import LOSS_FULL_SOFTMAX
from rectest.pipeline.spec import CreatorChoice, RunSpec

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


def exported_dim(run_dir: Path) -> int:
    """The dimension of the embeddings an earlier run exported (``sim.init=run:PATH``).

    Raises:
        ConfigError: the folder has no exported embeddings.
    """
    if not has_export(run_dir):
        raise ConfigError(
            f"sim.init=run:{run_dir}: no exported embeddings there (expected {Path(run_dir) / EMBEDDINGS_FOLDER / USERS_FILE}); "
            "point it at the folder of a run that trained a model"
        )
    return int(load_exported(run_dir).user_vectors.shape[1])


def load_export_for(run_dir: Path, interactions) -> tuple[np.ndarray, np.ndarray, dict]:
    """An earlier run's exported vectors, checked against this run's data (same user and item ids).

    Raises:
        ConfigError: the export was made from other data.
    """
    emb = load_exported(run_dir)
    same = np.array_equal(emb.user_ids, interactions.user_ids) and np.array_equal(
        emb.item_ids, interactions.item_ids
    )
    if not same:
        raise ConfigError(
            f"sim.init=run:{run_dir}: its embeddings cover {len(emb.user_ids)} users and {len(emb.item_ids)} "
            f"items, not this run's data ({interactions.num_users} users, {interactions.num_items} items of "
            f"{interactions.name}); use the same data option as that run"
        )
    return load_export(run_dir)


@dataclass
class Plan:
    """A built but untrained recommender: the task (with its net), its data and the Trainer factory."""

    task: pl.LightningModule
    datamodule: InteractionDataModule
    make_trainer: Callable[..., pl.Trainer]
    patience: int
    rng: torch.Tensor  # the CPU random state after the net was built: fitting continues from it


class EpochLines(pl.Callback):
    """One log line per training epoch (instead of a progress bar when the output is not a terminal)."""

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.callback_metrics:
            return
        values = ", ".join(f"{k}={float(v):.4f}" for k, v in sorted(trainer.callback_metrics.items()))
        log.info("epoch %d: %s", trainer.current_epoch, values)


def _check_trainer(spec: RunSpec, make_trainer: Callable[..., pl.Trainer]) -> None:
    """Refuse trainer settings Lightning would reject later (and with a traceback)."""
    epochs = _bound_arg(spec.trainer, "max_epochs")
    if epochs is not None and (int(epochs) == 0 or int(epochs) < -1):
        raise ConfigError(f"trainer.max_epochs={epochs}: expected at least 1 (or -1 for no limit)")
    try:
        make_trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    except MisconfigurationException as err:
        raise ConfigError(f"trainer: {' '.join(str(err).split())}") from None


def _bound_arg(fn: Callable, name: str, default=None):
    """An argument bound into a built ``_target_`` (a ``functools.partial``), or ``default``."""
    return (getattr(fn, "keywords", None) or {}).get(name, default)


def plan(spec: RunSpec, bundle: DataBundle, progress: str = "bar") -> Plan:
    """Build the spec's model and trainer for the bundle (cheap; bad arguments fail here, before any work).

    Args:
        spec: the run specification.
        bundle: the loaded data.
        progress: ``bar`` (Lightning's progress bar), ``lines`` (one log line per epoch) or ``off``.
    """
    inter, model = bundle.interactions, spec.model
    if _bound_arg(model.task, "loss") == LOSS_FULL_SOFTMAX and model.num_negatives > 0:
        raise ConfigError(
            f"model.num_negatives={model.num_negatives} with model.task.loss={LOSS_FULL_SOFTMAX}: the full "
            "softmax already scores every item; set model.num_negatives=0"
        )
    with torch.random.fork_rng(devices=_cuda_devices()):
        torch.manual_seed(spec.seed)
        net = model.net(num_users=inter.num_users, num_items=inter.num_items)
        task = model.task(net=net)
        rng = torch.get_rng_state()
    sim = spec.sim
    if float(_bound_arg(model.task, "uniformity", 0.0)) > 0 and sim.n_creators is not None:
        # spread the items the simulation will start from: the n most-rated of the log, as the pipeline
        # chooses them (sim.creators=most_rated); only which items are spread, not any label, comes from it
        if sim.creators is CreatorChoice.most_rated and sim.n_creators < inter.num_items:
            task.set_uniformity_pool(torch.from_numpy(most_rated(inter, sim.n_creators)))
    datamodule = InteractionDataModule(
        bundle.split,
        feedback=model.feedback,
        batch_size=model.batch_size,
        num_negatives=model.num_negatives,
        seed=spec.seed,
        exclude_positives=model.exclude_positives,
    )
    make_trainer = spec.trainer
    _check_trainer(spec, make_trainer)
    bar = progress == "bar" and bool(_bound_arg(spec.trainer, "enable_progress_bar", True))
    callbacks = [EpochLines()] if progress == "lines" else []
    trainer = functools.partial(_with_callbacks, make_trainer, callbacks, bar)
    return Plan(task, datamodule, trainer, model.patience, rng)


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _with_callbacks(
    make_trainer: Callable[..., pl.Trainer], extra: list[pl.Callback], bar: bool, **kwargs
) -> pl.Trainer:
    """``make_trainer`` with extra callbacks and the progress bar on or off."""
    kwargs["callbacks"] = [*kwargs.get("callbacks", []), *extra]
    kwargs.setdefault("enable_progress_bar", bar)  # the caller's choice wins (fit turns it off for tests)
    return make_trainer(**kwargs)


def train_and_export(todo: Plan, bundle: DataBundle, run_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Fit the planned recommender (early stopping on validation) and export unit-norm embeddings.

    Returns:
        (users (num_users, d), items (num_items, d), test metrics).
    """
    try:
        with torch.random.fork_rng(devices=_cuda_devices()):
            torch.set_rng_state(todo.rng)  # continue the seeded stream the net was built from
            metrics = fit(todo.task, todo.datamodule, todo.make_trainer, run_dir, patience=todo.patience)
    except SystemExit:  # Lightning turns Ctrl-C into a graceful shutdown and sys.exit(1)
        raise Interrupted("interrupted during training; run the same command to start again") from None
    net = todo.task.net
    export_embeddings(net, bundle.interactions, run_dir)
    (Path(run_dir) / EMBEDDINGS_FOLDER / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    log.info("trained %s: %s", type(net).__name__, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return load_export(run_dir)
