"""The typed run specification: parsed once from the command line, checked once by the engine."""

from __future__ import annotations

import functools
import math
import re
import subprocess
import sys

import pytest
import torch

from rectest.data.sources import synthetic
from rectest.errors import ConfigError
from rectest.models.mf import MatrixFactorization
from rectest.models.task import RecommenderTask
from rectest.pipeline.compose import build_spec
from rectest.pipeline.spec import (
    CreatorChoice,
    Device,
    DynamicsSpec,
    Impact,
    LoggerSpec,
    ModelSpec,
    PolicySpec,
    RunSpec,
    SimSpec,
)
from rectest.pipeline.sweep import expand
from rectest.sim import Dynamics, Policy
from tests.conftest import REPO, compose_config


def tiny_spec(**sim) -> RunSpec:
    """A run built in Python, without Hydra: the synthetic world's true vectors, 4 steps."""
    data = functools.partial(synthetic, n_users=30, n_creators=12, d=4, ratings_per_user=6, seed=0)
    settings = {"steps": 4, "seeds": [0, 1], "init": "truth", "checkpoint_every": 2, **sim}
    model = ModelSpec(
        dim=4,
        batch_size=64,
        net=functools.partial(MatrixFactorization, dim=4),
        task=functools.partial(RecommenderTask, lr=0.05),
    )
    return RunSpec(
        data=data,
        model=model,
        policy=PolicySpec(name="topk", k=[2, "n"]),
        sim=SimSpec(**settings),
        logger=LoggerSpec(tensorboard=False, figures=False, projector=False, progress=False),
    )


def test_a_swept_value_goes_from_the_command_line_to_the_engine_through_the_spec():
    spec = build_spec(compose_config(["policy.k=[3,n]", "policy.beta=[1,inf]", "dynamics.eta_c=0.2"]))
    assert spec.policy.k == (3, "n") and spec.policy.beta == (1.0, math.inf)
    sweep = expand(spec, n_creators=50, d=10)
    seeds = len(spec.sim.seeds)
    assert isinstance(sweep.policy, Policy) and isinstance(sweep.dynamics, Dynamics)
    # parameters vary slowest (beta before k), seeds fastest; k = n is the number of creators
    assert sweep.policy.beta == [1.0] * 2 * seeds + [math.inf] * 2 * seeds
    assert sweep.policy.k == ([3] * seeds + [50] * seeds) * 2
    assert sweep.dynamics.eta_c == [0.2] * 4 * seeds
    assert sweep.keys == ["beta", "k"]


def test_grids_make_the_replicas_a_union_of_products_named_by_family():
    spec = build_spec(
        compose_config(
            [
                "sim.seeds=[0,1]",
                "dynamics.eta_c=0.2",
                "sim.grids=[{name: soft, beta: [1, inf]}, {name: top, k: [3, n], eta_u: 0.05}, {tau: 0.5}]",
            ]
        )
    )
    sweep = expand(spec, n_creators=50, d=10)
    families = [r.params["family"] for r in sweep.replicas]
    assert families == ["soft"] * 4 + ["top"] * 4 + ["2"] * 2  # grids in order, an unnamed one by position
    assert sweep.policy.beta == [1.0, 1.0, math.inf, math.inf] + [1.0] * 6  # base beta outside its grid
    assert sweep.policy.k == [None] * 4 + [3, 3, 50, 50] + [None] * 2  # k = n resolved; off outside its grid
    assert sweep.policy.tau == [None] * 8 + [0.5, 0.5]
    assert sweep.dynamics.eta_u == [0.1] * 4 + [0.05] * 4 + [0.1] * 2
    assert sweep.dynamics.eta_c == [0.2] * 10  # the base value of every grid
    assert sweep.seeds == [0, 1] * 5
    assert sweep.keys == ["family", "beta", "k", "tau", "eta_u"]  # what varies across the union
    for grids, message in [
        ("[{kk: 3}]", "sim.grids[0] has key(s) ['kk']: expected swept keys among beta, k,"),
        ("[{name: a, k: 0}, {name: a}]", "sim.grids: names ['a', 'a'] repeat"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            build_spec(compose_config([f"sim.grids={grids}"]))
    with pytest.raises(
        ConfigError, match=re.escape("sim.grids[1] (b): policy.k=2.5: expected a whole number")
    ):
        expand(build_spec(compose_config(["sim.grids=[{name: a}, {name: b, k: 2.5}]"])), 50, 10)
    with pytest.raises(ConfigError, match=re.escape("policy.k=0: expected an integer >= 1")):
        expand(build_spec(compose_config(["sim.grids=[{name: a}, {name: b, k: 0}]"])), 50, 10)


@pytest.mark.parametrize(
    "override, engine_call",
    [
        ("policy.k=0", lambda: Policy(k=[0])),
        ("policy.beta=-2", lambda: Policy(beta=[-2.0])),
        ("policy.tau=1.5", lambda: Policy(tau=[1.5])),
        ("dynamics.eta_u=1.5", lambda: Dynamics(eta_u=[1.5])),
        ("policy.mmr_lambda=0.5", lambda: Policy(mmr_lambda=[0.5], k=[None])),
        ("dynamics.creator_cost=-1", lambda: Dynamics(creator_cost=[-1.0])),
    ],
)
def test_a_bad_value_is_refused_by_the_engine_with_the_config_key(override, engine_call):
    with pytest.raises(ValueError) as engine:
        engine_call()
    with pytest.raises(ConfigError) as pipeline:
        expand(build_spec(compose_config([override])), n_creators=50, d=10)
    assert str(pipeline.value) == str(engine.value)  # the engine's own message
    assert str(pipeline.value).startswith(override.split("=")[0])


def test_nothing_but_the_engine_checks_the_ranges(monkeypatch):
    """With the engine's checks switched off, an out-of-range value passes the command line, the spec and
    the sweep untouched: no other layer checks it a second time."""
    monkeypatch.setattr(Policy, "__post_init__", lambda self: None)
    monkeypatch.setattr(Policy, "check", lambda self, n: None)
    monkeypatch.setattr(Dynamics, "__post_init__", lambda self: None)
    monkeypatch.setattr(Dynamics, "check", lambda self, d: None)
    spec = build_spec(
        compose_config(["policy.k=0", "policy.beta=-2", "dynamics.eta_u=7", "dynamics.fixed_dims=99"])
    )
    sweep = expand(spec, n_creators=50, d=10)
    assert set(sweep.policy.k) == {0} and set(sweep.policy.beta) == {-2.0}
    assert set(sweep.dynamics.eta_u) == {7.0} and set(sweep.dynamics.fixed_dims) == {99}


def test_the_spec_parses_its_values_once_and_names_the_key():
    policy = PolicySpec(beta="inf", k=[1, "n", None], tau=None)
    assert policy.beta == (math.inf,) and policy.k == (1, "n", None) and policy.tau == (None,)
    assert DynamicsSpec(f="tanh").f is Impact.tanh
    sim = SimSpec(device="cpu", creators="random", retrain_every=[0, 5])
    assert sim.device is Device.cpu and sim.creators is CreatorChoice.random and sim.retrain_every == (0, 5)
    for build, message in [
        (lambda: PolicySpec(k=2.5), "policy.k=2.5: expected a whole number or 'n' (or null)"),
        (lambda: PolicySpec(beta=[]), "policy.beta=[]: a sweep needs at least one value"),
        (lambda: DynamicsSpec(g="cube"), "dynamics.g='cube': expected one of sign, identity, tanh"),
        (
            lambda: DynamicsSpec(creator_rule=["audience", "greed"]),
            "dynamics.creator_rule='greed': expected one of audience, exposure, engagement",
        ),
        (lambda: SimSpec(device="gpu"), "sim.device='gpu': expected one of auto, cpu, cuda"),
        (lambda: SimSpec(steps=-1), "sim.steps=-1: expected a whole number >= 0"),
        (lambda: SimSpec(init="weights"), "sim.init='weights': expected one of embeddings, truth, run:PATH"),
        (lambda: SimSpec(shards="many"), "sim.shards='many': expected a whole number or 'auto'"),
        (
            lambda: SimSpec(churn={"window": 5, "min_share": 2}),
            "sim.churn.min_share=2: expected a value in [0, 1]",
        ),
        (lambda: SimSpec(churn={"window": -1}), "sim.churn.window=-1: expected a whole number >= 0"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            build()


def test_the_identity_of_a_python_spec_is_stable_and_tells_runs_apart():
    first, again = tiny_spec(), tiny_spec()
    assert first.identity == again.identity and "0x" not in first.identity  # no memory addresses
    assert tiny_spec(steps=5).identity != first.identity
    assert (
        RunSpec(data=first.data, logger=LoggerSpec(figures=True)).identity
        == RunSpec(data=first.data).identity
    )


def test_run_takes_a_spec_built_without_hydra(tmp_path):
    """A script that never imports Hydra runs the pipeline from a spec built in Python."""
    script = f"""
import functools, sys
from pathlib import Path
from rectest.data.sources import synthetic
from rectest.models.mf import MatrixFactorization
from rectest.models.task import RecommenderTask
from rectest.pipeline import LoggerSpec, PolicySpec, RunSpec, SimSpec, run
spec = RunSpec(
    data=functools.partial(synthetic, n_users=30, n_creators=12, d=4, ratings_per_user=6, seed=0),
    policy=PolicySpec(k=[2, "n"]), sim=SimSpec(steps=3, seeds=[0], init="truth"),
    logger=LoggerSpec(tensorboard=False, figures=False, projector=False, progress=False))
folder = run(spec, Path({str(tmp_path / "run")!r}))
assert "hydra" not in sys.modules, "the pipeline imported Hydra"
print((folder / "metrics.csv").read_text().count("\\n"))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(1 + 3 * 2)  # header + 3 steps x 2 replicas (k = 2, n)


def test_the_pipeline_leaves_the_process_state_alone(tmp_path):
    from rectest.pipeline import run

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    rng = torch.get_rng_state()
    try:
        run(tiny_spec(), tmp_path / "run")
        assert torch.get_num_threads() == 2
        assert torch.equal(torch.get_rng_state(), rng)
    finally:
        torch.set_num_threads(threads)


def test_training_is_seeded_without_touching_the_callers_random_state(tmp_path):
    from rectest.pipeline import run

    def trained(name: str):
        spec = tiny_spec(init="embeddings", steps=0)
        spec.trainer = functools.partial(_trainer, max_epochs=1)
        folder = run(spec, tmp_path / name)
        return (folder / "embeddings" / "users.npz").read_bytes()

    torch.manual_seed(1)
    first = trained("a")
    torch.manual_seed(2)  # another global state: the same weights
    assert trained("b") == first


def _trainer(**kwargs):
    import pytorch_lightning as pl

    return pl.Trainer(accelerator="cpu", devices=1, deterministic=True, enable_model_summary=False, **kwargs)


def test_the_entry_point_returns_the_objective(tmp_path):
    import json

    from rectest.train import run_job

    cfg = compose_config(
        [
            "+experiment=topk",
            "sim.steps=3",
            "sim.seeds=[0,1]",
            "sim.init=truth",
            "logger=none",
            "sim.objective=CD",
        ]
    )
    value = run_job(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    finals = [rep["final"]["CD"] for rep in summary["replicas"]]
    assert isinstance(value, float) and value == pytest.approx(sum(finals) / len(finals))
    cfg = compose_config(["+experiment=topk", "sim.steps=0", "trainer.max_epochs=1", "logger=none"])
    assert math.isnan(run_job(cfg, tmp_path / "trained"))  # nothing simulated


def test_the_thread_choice_counts_rejection_sampled_replicas_on_logged_steps_only():
    """Prepared.size, which picks the CPU threads: replicas drawn by rejection score full rows only on logged
    steps; top-k replicas every step; with sim.sampler=inverse_cdf every replica every step."""
    from rectest.pipeline.runner import Prepared

    def size(*overrides: str) -> int:
        spec = build_spec(compose_config(["sim.seeds=[0,1]", "sim.log_every=10", *overrides]))
        sweep = expand(spec, n_creators=1000, d=8)
        return Prepared(spec, None, m=500, n=1000, d=8, sweep=sweep, todo=None).size

    rows = 500 * 1000
    assert size("policy.k=[5,n]") == 2 * rows + 2 * rows // 10  # the k = n replicas are drawn by rejection
    assert size("policy.k=[5,n]", "sim.sampler=inverse_cdf") == 4 * rows
    assert size("policy.k=[5,n]", "policy.beta=10") == 4 * rows  # beta > 3: full rows
