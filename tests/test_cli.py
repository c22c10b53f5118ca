"""The command line as a user meets it: bad input ends with one clear line, exit status 2, no traceback, no folder."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _train(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "rectest.train", *overrides, f"hydra.run.dir={run_dir}", "sim.steps=2"]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["policy.beta=-1"], "policy.beta=-1.0"),
        (["policy=topk", "policy.k=[1,500]"], "policy.k=500"),
        (["policy=threshold", "policy.tau=2"], "policy.tau=2.0"),
        (["dynamics.fixed_dims=64"], "dynamics.fixed_dims=64"),
        (["data=ml-100k", "data.path=/nonexistent/folder", "data.download=false"], "/nonexistent/folder"),
        (["data=embeddings", "data.path=/nonexistent/emb.npz"], "/nonexistent/emb.npz"),
        (["+data.colour=red"], "colour"),
        (["model.task.lr=-1"], "lr=-1"),
        (["policy.beta=inf", "policy.rho=1"], "policy.rho"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path, overrides, needle):
    done = _train(tmp_path, *overrides)
    assert done.returncode == 2, done.stderr[-1500:]
    assert "Traceback" not in done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("rectest: error:")]
    assert len(errors) == 1 and needle in errors[0], done.stderr[-1500:]
    assert not (tmp_path / "run").exists(), "a refused run left its folder behind"


def test_misspelt_key_fails_without_traceback(tmp_path):
    done = _train(tmp_path, "sim.stepz=3")
    assert done.returncode != 0 and "Traceback" not in done.stderr and "stepz" in done.stderr


def _cli(*args: str, cwd=REPO, env=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rectest.train", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _one_error_line(done: subprocess.CompletedProcess, needle: str) -> None:
    assert done.returncode == 2, done.stderr[-1500:]
    assert "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("rectest: error:")]
    assert len(errors) == 1 and needle in errors[0], done.stderr[-1500:]


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["+experiment=nope"], "experiment/nope"),
        (["polcy.k=3"], "polcy"),
        (["+polcy.k=3"], "unknown top-level key(s) ['polcy']"),
        (["+sim.stepz=3"], "unknown key(s) ['sim.stepz']"),
        (["trainer=gpu"], "trainer:"),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0"),
        (["sim.seeds=[0,0]"], "repeated"),
        (["model.dim=0"], "model.dim=0"),
        (["data.split=u9"], "data.split='u9': synthetic supports random, temporal, global_time"),
        (["sim.grids=[{name: a, kk: 3}]"], "sim.grids[0] has key(s) ['kk']"),
        (["dynamics.creator_rule=greed"], "dynamics.creator_rule='greed': expected one of audience,"),
        (
            ["dynamics.creator_rule=exposure", "policy.rho=1"],
            "dynamics.creator_rule=exposure with policy.rho=1",
        ),
        (["+experiment=retraining", "dynamics.creator_rule=engagement"], "with sim.recommender=learned"),
        (["sim.churn.window=5", "sim.churn.entrant=clone"], "sim.churn.entrant='clone': expected one of"),
    ],
)
def test_hydra_and_lightning_errors_are_one_line_and_leave_nothing(tmp_path, overrides, needle):
    done = _train(tmp_path, *overrides)
    _one_error_line(done, needle)
    assert not (tmp_path / "run").exists(), "a refused run left its folder behind"


def test_a_failed_run_does_not_block_its_name(tmp_path):
    run_dir = tmp_path / "run"
    base = [f"hydra.run.dir={run_dir}", "sim.steps=2", "sim.seeds=[0]", "logger=none"]

    def train(*extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "rectest.train", *base, *extra]
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)

    assert train("trainer.max_epochs=0").returncode == 2
    good = train("trainer.max_epochs=1")
    assert good.returncode == 0, good.stderr[-1500:]
    assert (run_dir / "summary.json").exists()


def test_refused_default_run_leaves_no_dated_folder(tmp_path):
    """The default run name is outputs/<date>/<time>: a refusal removes both levels."""
    done = _cli("policy.beta=-1", cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr[-1500:]
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_help_lists_real_options_only():
    done = _cli("--help")
    assert done.returncode == 0
    groups = done.stdout.split("== Config ==")[0]
    assert "policy: softmax, threshold, topk" in groups and "base_" not in groups and "schema" not in groups
