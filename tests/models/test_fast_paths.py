"""MF's fast training paths: the fused loss and sparse embeddings give the textbook values and gradients."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch._inductor.exc import InductorError
from torch.nn import functional as F

from rectest.data.datamodule import InteractionDataModule
from rectest.data.interactions import Split
from rectest.errors import ConfigError
from rectest.models import mf_fused
from rectest.models.fit import fit
from rectest.models.mf import MatrixFactorization
from rectest.models.task import RecommenderTask


def random_mf(sparse: bool = False, compile: bool = False) -> MatrixFactorization:
    torch.manual_seed(0)
    net = MatrixFactorization(6, 9, dim=4, global_mean=3.2, init_std=0.7, sparse=sparse, compile=compile)
    torch.nn.init.normal_(net.user_bias.weight)
    torch.nn.init.normal_(net.item_bias.weight)
    return net


def reference_loss(net: MatrixFactorization, user: torch.Tensor, item: torch.Tensor, rating: torch.Tensor):
    """Per-pair loop over the textbook biased-MF prediction and L2 (no shared code with the net)."""
    errs, norms = [], []
    for u, i, r in zip(user.tolist(), item.tolist(), rating.tolist(), strict=True):
        p, q = net.user_factors.weight[u], net.item_factors.weight[i]
        bu, bi = net.user_bias.weight[u, 0], net.item_bias.weight[i, 0]
        errs.append((net.global_mean + bu + bi + p @ q - r) ** 2)
        norms.append(p @ p + q @ q + bu**2 + bi**2)
    return torch.stack(errs).mean(), torch.stack(norms).mean()


@pytest.mark.parametrize(
    ("sparse", "compile"),
    [(False, False), (True, False), (False, True)],
    ids=["fused", "sparse", "fused-compiled"],
)
def test_fused_loss_and_gradients_equal_the_textbook_formula(sparse: bool, compile: bool) -> None:
    user = torch.tensor([0, 5, 5, 2, 0, 3, 5])  # repeated users and items accumulate gradients
    item = torch.tensor([8, 1, 1, 0, 4, 8, 7])
    rating = torch.tensor([4.0, 1.0, 2.0, 5.0, 3.0, 3.5, 4.5])
    l2 = 0.3
    net = random_mf(sparse, compile)
    mse, penalty = net.mse_and_penalty(user, item, rating)
    (mse + l2 * penalty).backward()
    got = {name: p.grad.to_dense() for name, p in net.named_parameters()}
    ref = random_mf(sparse)
    want_mse, want_penalty = reference_loss(ref, user, item, rating)
    (want_mse + l2 * want_penalty).backward()
    torch.testing.assert_close(mse, want_mse)
    torch.testing.assert_close(penalty, want_penalty)
    for name, p in ref.named_parameters():
        torch.testing.assert_close(got[name], p.grad.to_dense(), msg=name)
    assert got["user_factors.weight"][1].abs().sum() == 0  # user 1 is not in the batch


def test_adam_refuses_sparse_embeddings() -> None:
    with pytest.raises(ConfigError, match="sparse_adam"):
        RecommenderTask(random_mf(sparse=True), optimizer="adam")


def test_compiled_step_refuses_sparse_tables() -> None:
    with pytest.raises(ConfigError, match="compile"):
        random_mf(sparse=True, compile=True)


@pytest.mark.parametrize("half", ["forward", "backward"])
def test_a_failing_compiler_is_one_config_error(monkeypatch: pytest.MonkeyPatch, half: str) -> None:
    def broken(*args: object) -> None:
        raise InductorError(RuntimeError("no working C++ compiler found\nlong traceback ..."), None)

    kernels = {"forward": mf_fused._forward, "backward": mf_fused._backward, half: broken}
    monkeypatch.setattr(mf_fused, "_COMPILED", kernels)
    net = random_mf(compile=True)
    with pytest.raises(ConfigError, match="compile=false.*C\\+\\+ compiler") as caught:
        mse, penalty = net.mse_and_penalty(torch.tensor([0]), torch.tensor([1]), torch.tensor([3.0]))
        (mse + penalty).backward()
    assert "InductorError: RuntimeError: no working C++ compiler found)" in str(caught.value)


def test_other_errors_of_the_compiled_step_are_not_blamed_on_the_compiler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def out_of_range(*args: object) -> None:
        raise IndexError("index 7 is out of bounds for dimension 0 with size 6")

    monkeypatch.setattr(mf_fused, "_COMPILED", {"forward": out_of_range, "backward": mf_fused._backward})
    with pytest.raises(IndexError, match="out of bounds"):
        random_mf(compile=True).mse_and_penalty(torch.tensor([7]), torch.tensor([1]), torch.tensor([3.0]))


@pytest.mark.parametrize("warn_only", [False, True])
def test_the_compiled_step_keeps_the_deterministic_setting(warn_only: bool) -> None:
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    try:
        net = random_mf(compile=True)
        mse, penalty = net.mse_and_penalty(torch.tensor([0, 5, 5]), torch.tensor([8, 1, 1]), torch.ones(3))
        (mse + 0.3 * penalty).backward()
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled() is warn_only
        eager = random_mf()
        mse_e, penalty_e = eager.mse_and_penalty(
            torch.tensor([0, 5, 5]), torch.tensor([8, 1, 1]), torch.ones(3)
        )
        (mse_e + 0.3 * penalty_e).backward()
        for (name, p), (_, q) in zip(net.named_parameters(), eager.named_parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, msg=name)  # repeated rows: the scatter adds up
    finally:
        torch.use_deterministic_algorithms(False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_sparse_adam_moves_only_the_batch_rows() -> None:
    net = random_mf(sparse=True)
    task = RecommenderTask(net, optimizer="sparse_adam", lr=0.1)
    opts, schedules = task.configure_optimizers()
    assert [type(o) for o in opts] == [torch.optim.SparseAdam, torch.optim.Adam] and len(schedules) == 2
    before = net.user_factors.weight.detach().clone()
    mse, penalty = net.mse_and_penalty(torch.tensor([2, 4]), torch.tensor([0, 3]), torch.tensor([1.0, 5.0]))
    (mse + penalty).backward()
    for opt in opts:
        opt.step()
    moved = (net.user_factors.weight.detach() != before).any(-1)  # (6,)
    assert moved.tolist() == [False, False, True, False, True, False]


@pytest.mark.parametrize(("sparse", "optimizer"), [(False, "adam"), (True, "sparse_adam")])
def test_fast_paths_fit_a_low_rank_matrix(
    low_rank_split: Split, tmp_path: Path, sparse: bool, optimizer: str
):
    pl.seed_everything(0, verbose=False)
    train = low_rank_split.train
    net = MatrixFactorization(train.num_users, train.num_items, dim=4, init_std=0.1, sparse=sparse)
    task = RecommenderTask(net, "explicit", "mse", lr=0.05, optimizer=optimizer)
    dm = InteractionDataModule(low_rank_split, "explicit", batch_size=64, num_negatives=0, seed=0)
    make = functools.partial(
        pl.Trainer, max_epochs=150, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False
    )
    metrics = fit(task, dm, make, tmp_path, patience=150)
    with torch.no_grad():
        pred = net(torch.as_tensor(train.user), torch.as_tensor(train.item))
    spread = float(torch.as_tensor(train.rating).std())
    assert F.mse_loss(pred, torch.as_tensor(train.rating)).sqrt() < 0.05 * spread
    assert metrics["test/rmse"] < 0.05 * spread


def test_learning_rate_decays_once_per_epoch(low_rank_split: Split, tmp_path: Path) -> None:
    pl.seed_everything(0, verbose=False)
    train = low_rank_split.train
    net = MatrixFactorization(train.num_users, train.num_items, dim=2, sparse=True)
    task = RecommenderTask(net, lr=0.04, lr_decay=0.5, optimizer="sparse_adam")
    dm = InteractionDataModule(low_rank_split, "explicit", batch_size=128, num_negatives=0, seed=0)
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    trainer.fit(task, datamodule=dm)
    assert [o.param_groups[0]["lr"] for o in trainer.optimizers] == [0.04 * 0.5**3] * 2
