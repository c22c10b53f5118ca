"""Train a :class:`RecommenderTask` with pytorch-lightning and return its test metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from rectest.data.datamodule import InteractionDataModule
from rectest.models.task import RecommenderTask

TB_FOLDER = "tb"
TB_VERSION = "train"
CHECKPOINT_FOLDER = "checkpoints"
BEST = "best"


def fit(
    task: RecommenderTask,
    datamodule: InteractionDataModule,
    make_trainer: Callable[..., pl.Trainer],
    run_dir: str | Path,
    patience: int = 5,
) -> dict[str, float]:
    """Train with early stopping on the validation metric, reload the best checkpoint and test it.

    Writes TensorBoard events to ``run_dir/tb/train/`` (train/ and val/ tags) and checkpoints to
    ``run_dir/checkpoints/`` (``best.ckpt`` and ``last.ckpt``). Without a validation log there is no early
    stopping and the last epoch is tested.

    Args:
        task: the LightningModule (with its network).
        datamodule: the data (its split's val log drives early stopping, its test log is reported).
        make_trainer: builds the Trainer from extra keyword arguments (``callbacks``, ``logger``,
            ``default_root_dir``); the Hydra node ``trainer`` with ``_partial_: true`` is exactly this.
        run_dir: the run folder.
        patience: validation epochs without improvement before stopping.

    After the call, ``task.net`` holds the weights that were tested (the best checkpoint's), ready for
    :func:`rectest.models.export.export_embeddings`.

    Returns:
        Test metrics, e.g. ``{"test/rmse": 0.91, "test/mae": 0.72}`` or ``{"test/recall@10": ..., ...}``
        (the val/ metrics of the best checkpoint when the split has no test log).
    """
    run_dir = Path(run_dir)
    has_val = len(datamodule.split.val) > 0
    monitor, mode = task.monitor
    callbacks: list[pl.Callback] = []
    if has_val:
        callbacks += [
            EarlyStopping(monitor=monitor, mode=mode, patience=patience),
            ModelCheckpoint(
                dirpath=run_dir / CHECKPOINT_FOLDER,
                filename=BEST,
                monitor=monitor,
                mode=mode,
                save_last=True,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            ),
        ]
    logger = TensorBoardLogger(
        save_dir=str(run_dir), name=TB_FOLDER, version=TB_VERSION, default_hp_metric=False
    )
    trainer = make_trainer(callbacks=callbacks, logger=logger, default_root_dir=str(run_dir))
    trainer.fit(task, datamodule=datamodule)
    evaluate = trainer.test if len(datamodule.split.test) > 0 else trainer.validate
    results = evaluate(task, datamodule=datamodule, ckpt_path=BEST if has_val else None, verbose=False)
    return {name: float(v) for name, v in (results[0] if results else {}).items()}
