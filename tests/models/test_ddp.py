"""Data-parallel training: ``trainer=ddp`` with 2 CPU processes (gloo) through ``rectest.models.fit.fit``.

Lightning's DDP strategy re-runs the calling script for rank 1, so the training runs in a script of its
own (in a subprocess); each rank writes its weights and returned metrics to a file the test reads.

The evaluation log has 20,000 rows: evaluation batches hold at least 8,192 rows and are dealt out to the
ranks, and Lightning refuses a rank with no batch (a smaller validation log fails under DDP).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 15

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import numpy as np
    import pytorch_lightning as pl
    import torch
    from hydra import compose, initialize_config_dir

    import rectest.pipeline.compose
    from rectest.pipeline.compose import build_spec
    from rectest.data.datamodule import InteractionDataModule
    from rectest.data.interactions import Interactions, Split
    from rectest.models.fit import fit
    from rectest.models.mf import MatrixFactorization
    from rectest.models.task import RecommenderTask

    torch.set_num_threads(1)
    conf, out = sys.argv[1], Path(sys.argv[2])
    overrides = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs={epochs}",
                 "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    make_trainer = build_spec(cfg).trainer

    rng = np.random.default_rng(0)  # every rating of a 200 x 100 rank-2 matrix in [1, 5]
    m, n = 200, 100
    ratings = np.clip(3.0 + rng.normal(size=(m, 2)) @ rng.normal(size=(2, n)) * 0.6, 1.0, 5.0)
    user, item = (a.ravel() for a in np.meshgrid(np.arange(m), np.arange(n), indexing="ij"))
    log = Interactions(user=user.astype(np.int64), item=item.astype(np.int64),
                       rating=ratings.ravel().astype(np.float32), timestamp=None,
                       user_ids=np.arange(m), item_ids=np.arange(n), name="rank2")
    split = Split(train=log, val=log, test=log)  # 20,000 rows: every rank gets an evaluation batch

    pl.seed_everything(0, verbose=False)
    net = MatrixFactorization(m, n, dim=4, init_std=0.1)
    task = RecommenderTask(net, "explicit", "mse", lr=0.05)
    dm = InteractionDataModule(split, "explicit", batch_size=1024, num_negatives=0, seed=0)
    metrics = fit(task, dm, make_trainer, out / "run", patience={epochs})

    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else -1
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else None
    with torch.no_grad():
        pred = task.predict_ratings(torch.as_tensor(log.user), torch.as_tensor(log.item))
    rmse = float((pred - torch.as_tensor(log.rating)).pow(2).mean().sqrt())
    torch.save({{k: v.detach().cpu() for k, v in task.net.state_dict().items()}}, out / f"rank{{rank}}.pt")
    summary = dict(metrics=metrics, world=world, backend=backend, rmse_all_rows=rmse,
                   spread=float(np.std(log.rating)))
    (out / f"rank{{rank}}.json").write_text(json.dumps(summary))
    """
).format(epochs=EPOCHS)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the 2-process training once; return the folder holding each rank's results."""
    out = tmp_path_factory.mktemp("ddp")
    script = out / "train_ddp.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(REPO / "conf"), str(out)],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
        env={**_env(), "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("LOCAL_RANK", None)  # a stale rank would make Lightning think it is a launched child
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_two_gloo_processes_train(ddp_run: Path) -> None:
    ranks = [json.loads((ddp_run / f"rank{r}.json").read_text()) for r in (0, 1)]
    for summary in ranks:
        assert summary["world"] == 2 and summary["backend"] == "gloo"
        # trained: the rank-2 matrix is fitted far better than by its mean rating (RMSE = the spread)
        assert summary["rmse_all_rows"] < 0.3 * summary["spread"]
        # metrics come back on every rank, from the reloaded best checkpoint
        assert set(summary["metrics"]) >= {"test/rmse", "test/mae"}
        # the test log is the whole log: the RMSE summed over both ranks' batches is the RMSE over all rows
        np.testing.assert_allclose(summary["metrics"]["test/rmse"], summary["rmse_all_rows"], rtol=1e-4)
        assert summary["metrics"]["test/mae"] <= summary["metrics"]["test/rmse"]


def test_the_processes_agree(ddp_run: Path) -> None:
    zero, one = (torch.load(ddp_run / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert zero.keys() == one.keys()
    for name in zero:
        assert torch.equal(zero[name], one[name]), name  # gradients all-reduced: identical replicas
    m0, m1 = (json.loads((ddp_run / f"rank{r}.json").read_text())["metrics"] for r in (0, 1))
    for name in m0:
        np.testing.assert_allclose(m0[name], m1[name], rtol=1e-6, err_msg=name)  # reduced over ranks
    assert (ddp_run / "run" / "checkpoints" / "best.ckpt").is_file()
