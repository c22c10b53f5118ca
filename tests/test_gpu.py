"""CUDA: the engine agrees with the CPU on a deterministic trajectory, and a recommender trains on the GPU.

The tests marked ``gpu`` skip without CUDA; without it, the GPU check script must say so and succeed. ``benchmarks/gpu_check.sh`` runs the larger
agreement check and the MovieLens-20M-scale timings.
"""

from __future__ import annotations

import functools
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from rectest.sim import MEASURES, Dynamics, Policy, Simulation, State, random_sphere
from rectest.sim.shards import UserShards

REPO = Path(__file__).resolve().parents[1]
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (no GPU visible to torch here)"
)
CUDA = torch.device("cuda")


@pytest.fixture
def exact_matmul():
    """TF32 would round the scores to 10 mantissa bits: off, so CPU and CUDA can agree."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def world(m: int, n: int, d: int, dtype: torch.dtype) -> State:
    g = torch.Generator().manual_seed(7)
    return State(random_sphere(1, m, d, g, dtype), random_sphere(1, n, d, g, dtype))


def top1_run(state: State, steps: int) -> tuple[torch.Tensor, Simulation]:
    sim = Simulation(state, Policy(beta=math.inf), Dynamics(eta_u=0.1, eta_c=0.2), seeds=[0], log_every=5)
    chosen = torch.stack([sim.step(log=t == steps - 1).cpu() for t in range(steps)])  # (T, 1, m)
    return chosen, sim


@pytest.mark.gpu
@needs_cuda
@pytest.mark.usefixtures("exact_matmul")
def test_cuda_follows_the_cpu_trajectory_with_beta_inf() -> None:
    state = world(300, 40, 8, torch.float64)
    cpu_chosen, cpu = top1_run(state, 60)
    gpu_chosen, gpu = top1_run(State(state.users.to(CUDA), state.creators.to(CUDA)), 60)
    assert gpu.users.device.type == "cuda"
    assert torch.equal(gpu_chosen, cpu_chosen)  # the same creator for every user at every step
    torch.testing.assert_close(gpu.users.cpu(), cpu.users, rtol=0, atol=1e-10)
    torch.testing.assert_close(gpu.creators.cpu(), cpu.creators, rtol=0, atol=1e-10)
    for name in MEASURES:
        torch.testing.assert_close(gpu.history[name], cpu.history[name], rtol=1e-9, atol=1e-10, msg=name)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.usefixtures("exact_matmul")
def test_sharded_simulation_runs_on_cuda_and_draws_what_the_engine_draws() -> None:
    state = world(200, 30, 6, torch.float32)
    cuda_state = State(state.users.to(CUDA), state.creators.to(CUDA))
    policy = Policy(beta=[1.0, 5.0], k=[30, 4])
    engine = Simulation(cuda_state, policy, Dynamics(), seeds=[3, 4], log_every=4)
    sharded = Simulation(
        cuda_state, policy, Dynamics(), seeds=[3, 4], log_every=4, shards=UserShards(cuda_state.m)
    )
    for _ in range(12):
        assert torch.equal(engine.step(), sharded.step())
    assert torch.equal(engine.creators, sharded.creators)
    for name in MEASURES:
        torch.testing.assert_close(sharded.history[name], engine.history[name], rtol=1e-6, atol=1e-7)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.usefixtures("exact_matmul")
def test_device_auto_picks_cuda() -> None:
    from rectest.pipeline.runner import resolve_device
    from rectest.pipeline.spec import Device

    assert resolve_device(Device.auto).type == "cuda"


def _with_callback(make_trainer, extra, **kwargs):  # -> pl.Trainer
    """``make_trainer`` with one more callback besides the ones ``fit`` passes."""
    return make_trainer(**{**kwargs, "callbacks": [*kwargs.get("callbacks", []), extra]})


@pytest.mark.gpu
@needs_cuda
@pytest.mark.usefixtures("exact_matmul")
def test_mf_trains_on_cuda(tmp_path: Path) -> None:
    import pytorch_lightning as pl

    from rectest.data.datamodule import InteractionDataModule
    from rectest.data.interactions import Interactions, Split
    from rectest.models.export import export_embeddings, load_exported
    from rectest.models.fit import fit
    from rectest.models.mf import MatrixFactorization
    from rectest.models.task import RecommenderTask

    class Where(pl.Callback):
        def __init__(self) -> None:
            self.devices: set[str] = set()

        def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object) -> None:
            self.devices.add(next(module.parameters()).device.type)

    rng = np.random.default_rng(0)  # every rating of a 40 x 30 rank-2 matrix
    m, n = 40, 30
    ratings = np.clip(3.0 + rng.normal(size=(m, 2)) @ rng.normal(size=(2, n)) * 0.6, 1.0, 5.0)
    user, item = (a.ravel() for a in np.meshgrid(np.arange(m), np.arange(n), indexing="ij"))
    log = Interactions(
        user.astype(np.int64), item.astype(np.int64), ratings.ravel().astype(np.float32), None,
        np.arange(m) + 1, np.arange(n) + 1, name="rank2",
    )  # fmt: skip
    split = Split(train=log, val=log, test=log)
    pl.seed_everything(0, verbose=False)
    task = RecommenderTask(MatrixFactorization(m, n, dim=4, init_std=0.1), "explicit", "mse", lr=0.05)
    where = Where()
    make_trainer = functools.partial(
        pl.Trainer, max_epochs=60, accelerator="gpu", devices=1, enable_progress_bar=False
    )
    make_trainer = functools.partial(_with_callback, make_trainer, where)
    metrics = fit(
        task, InteractionDataModule(split, "explicit", 128, 0, seed=0), make_trainer, tmp_path, patience=60
    )
    assert where.devices == {"cuda"}
    assert metrics["test/rmse"] < 0.2 * float(np.std(log.rating))  # fitted far better than the mean rating
    export_embeddings(task.net, log, tmp_path)
    emb = load_exported(tmp_path)
    norms = emb.user_vectors.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs the full check (minutes)")
def test_gpu_check_script_skips_cleanly_without_cuda() -> None:
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gpu_check: SKIP:") and "CUDA is not available" in done.stdout
