"""The sharded simulation equals the single-process engine: in a world of one, and over 2 gloo processes."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given
from hypothesis import strategies as st

from rectest.sim import MEASURES, Dynamics, Policy, Simulation, State, policies, random_sphere, select
from rectest.sim.churn import Churn
from rectest.sim.shards import UserShards, shard_bounds

REPO = Path(__file__).resolve().parents[2]
M_USERS, N_CREATORS, DIM, STEPS = 37, 11, 5, 24  # 37 users: an uneven split over 2 ranks
# (policy, dynamics, seeds, log_every) of each scenario run by both ranks and by one process
SCENARIOS = {
    "top1": (Policy(beta=math.inf), Dynamics(), [3, 4], 1),
    "sampled": (
        Policy(beta=[1.0, 3.0, 0.5], k=[N_CREATORS, 4, N_CREATORS]),
        Dynamics(eta_u=0.05),
        [0, 1, 2],
        3,
    ),
    "threshold_eps": (Policy(beta=2.0, tau=0.3, eps=0.1), Dynamics(f="identity", g="tanh"), [7], 2),
    "churn": (Policy(beta=2.0, k=[4, N_CREATORS]), Dynamics(), [1, 2], 2),
    # drawn by rejection sampling (allowed at this n by rejecting_small_worlds)
    "rejection": (Policy(beta=[1.0, 3.0], tau=[-1.0, 0.2]), Dynamics(eta_u=0.05), [8, 9], 3),
    # top-k drawn by the compiled truncated draw (allowed at this n and k by rejecting_small_worlds)
    "truncated": (Policy(beta=[1.0, 2.0], k=[4, 6], eps=[0.1, 0.0]), Dynamics(eta_u=0.05), [5, 6], 3),
}
EXTRA = {"churn": {"churn": Churn(window=3, min_share=0.6, entrant="copy", noise=0.2)}}
"""Simulation keywords of a scenario besides its policy and dynamics."""


@contextmanager
def rejecting_small_worlds(name: str):
    """The "rejection" and "truncated" scenarios draw by rejection although they have fewer than
    REJECTION_MIN_CREATORS (and "truncated" lists shorter than TOPK_LIST_MAX)."""
    saved = policies.REJECTION_MIN_CREATORS, policies.TOPK_LIST_MAX
    if name in ("rejection", "truncated"):
        policies.REJECTION_MIN_CREATORS = 1
    if name == "truncated":
        policies.TOPK_LIST_MAX = 2
    try:
        yield
    finally:
        policies.REJECTION_MIN_CREATORS, policies.TOPK_LIST_MAX = saved


def sharded(state: State, policy: Policy, dynamics: Dynamics, seeds: list[int], exact: bool = True, **kw):
    """The engine over this process's share of the users (the default group, or a world of one)."""
    return Simulation(state, policy, dynamics, seeds, shards=UserShards(state.m, exact=exact), **kw)


def initial_state(dtype: torch.dtype = torch.float32) -> State:
    g = torch.Generator().manual_seed(2024)
    return State(random_sphere(1, M_USERS, DIM, g, dtype), random_sphere(1, N_CREATORS, DIM, g, dtype))


def drive(sim: Simulation, steps: int) -> tuple[torch.Tensor, dict]:
    """Step by step; returns the ``(T, R, m_r)`` choices and the history (the last step always logged)."""
    chosen = torch.stack([sim.step(log=t == steps - 1) for t in range(steps)])
    return chosen, sim.history


def single_process(name: str) -> tuple[torch.Tensor, dict, Simulation]:
    policy, dynamics, seeds, log_every = SCENARIOS[name]
    with rejecting_small_worlds(name):
        sim = Simulation(
            initial_state(), policy, dynamics, seeds, log_every=log_every, chunk_size=6, **EXTRA.get(name, {})
        )
    assert bool(sim.rejecting) == (name == "rejection")
    truncated = [part.draws_truncated for _, part in sim.policy.kinds()]
    assert all(truncated) == (name == "truncated" and select.available(torch.device("cpu"), torch.float32))
    chosen, hist = drive(sim, STEPS)
    return chosen, hist, sim


def score_vectors() -> tuple[torch.Tensor, torch.Tensor]:
    """A learned recommender's (m, 3) user and (n, 3) creator vectors (another space than the truth)."""
    g = torch.Generator().manual_seed(99)
    return torch.randn(M_USERS, 3, generator=g), torch.randn(N_CREATORS, 3, generator=g)


def learned_run(make=Simulation) -> dict:
    """Steps in which the policy sees a recommender's scores (each rank gets its users' vectors)."""
    sim = make(initial_state(), Policy(beta=2.0), Dynamics(), [5, 6], log_every=4)
    su, sc = score_vectors()
    if sim.shards is not None:
        su = su[sim.shards.start : sim.shards.stop]
    chosen = torch.stack([sim.step(su, sc) for _ in range(10)])  # (T, R, m_r)
    return {"chosen": chosen, "history": sim.history}


def resume_run() -> dict:
    """12 steps, a state_dict, then 12 more steps both in the original and in a restored simulation."""
    policy, dynamics, seeds, log_every = SCENARIOS["sampled"]
    first = sharded(initial_state(), policy, dynamics, seeds, log_every=log_every)
    drive(first, 12)
    second = sharded(initial_state(), policy, dynamics, seeds, log_every=log_every)
    second.load_state_dict(first.state_dict())
    return {"original": drive(first, 12)[0], "restored": drive(second, 12)[0], "t": second.t}


# -- the sharding ----------------------------------------------------------------------------------------------
@given(total=st.integers(1, 500), world=st.integers(1, 16))
def test_shards_cover_the_users_once_and_in_order(total: int, world: int) -> None:
    if world > total:
        with pytest.raises(ValueError, match="world"):
            shard_bounds(total, world, 0)
        return
    bounds = [shard_bounds(total, world, r) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))  # contiguous, no overlap
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_a_world_of_one_is_the_engine() -> None:
    for name, (policy, dynamics, seeds, log_every) in SCENARIOS.items():
        ref_chosen, ref_hist, ref = single_process(name)
        extra = EXTRA.get(name, {})
        with rejecting_small_worlds(name):
            sim = sharded(
                initial_state(), policy, dynamics, seeds, log_every=log_every, chunk_size=6, **extra
            )
        chosen, hist = drive(sim, STEPS)
        assert torch.equal(chosen, ref_chosen), name
        assert torch.equal(sim.users, ref.users) and torch.equal(sim.creators, ref.creators), name
        assert torch.equal(hist["step"], ref_hist["step"])
        for measure in MEASURES:
            torch.testing.assert_close(hist[measure], ref_hist[measure], rtol=1e-6, atol=1e-7, msg=measure)


# -- two gloo processes ----------------------------------------------------------------------------------------
def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {}
        runs = [(name, name, True) for name in SCENARIOS] + [("sampled/all-reduce", "sampled", False)]
        for key, name, exact in runs:
            policy, dynamics, seeds, log_every = SCENARIOS[name]
            extra = EXTRA.get(name, {})
            with rejecting_small_worlds(name):
                sim = sharded(
                    initial_state(),
                    policy,
                    dynamics,
                    seeds,
                    exact,
                    log_every=log_every,
                    chunk_size=6,
                    **extra,
                )
            chosen, hist = drive(sim, STEPS)
            full = sim.gather_state()
            results[key] = {
                "bounds": (sim.shards.start, sim.shards.stop),
                "chosen": chosen,
                "history": hist,
                "users": full.users,
                "creators": sim.creators,
                "first_polarized_step": sim.first_polarized_step,
            }
        # a polarized start: every user and creator near +c or -c, so the flag is set at step 0
        axis = torch.nn.functional.normalize(torch.ones(DIM), dim=0)
        signs = torch.tensor([1.0, -1.0]).repeat(20)[:M_USERS].view(-1, 1)
        polar = State(signs * axis, torch.stack([axis, -axis, axis]))
        sim = sharded(polar, Policy(beta=1.0), Dynamics(), [0])
        sim.step()
        results["polar"] = {"first_polarized_step": sim.first_polarized_step}
        results["learned"] = learned_run(sharded)
        results["resume"] = resume_run()
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Every scenario run by 2 gloo processes (spawned once for the module)."""
    tmp = tmp_path_factory.mktemp("ranks")
    mp.spawn(_worker, args=(2, str(tmp / "init"), str(tmp)), nprocs=2, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_two_ranks_equal_one_process(two_ranks: list[dict], name: str) -> None:
    ref_chosen, ref_hist, ref = single_process(name)
    zero, one = two_ranks[0][name], two_ranks[1][name]
    assert zero["bounds"] == (0, 19) and one["bounds"] == (19, M_USERS)
    # every user got the same creator at every step: the draws and the decisions match exactly
    assert torch.equal(torch.cat([zero["chosen"], one["chosen"]], dim=-1), ref_chosen)
    # the creators' pulls are added in one process's order: the vectors are bit for bit the same
    for rank in (zero, one):
        assert torch.equal(rank["users"], ref.users) and torch.equal(rank["creators"], ref.creators)
        assert torch.equal(rank["history"]["step"], ref_hist["step"])
        for measure in MEASURES:
            torch.testing.assert_close(
                rank["history"][measure], ref_hist[measure], rtol=1e-5, atol=1e-6, msg=measure
            )
        assert torch.equal(rank["first_polarized_step"], ref.first_polarized_step)
    # the ranks hold the same creators and report the same measures, bit for bit
    assert torch.equal(zero["creators"], one["creators"]) and torch.equal(zero["users"], one["users"])
    for measure in MEASURES:
        assert torch.equal(zero["history"][measure], one["history"][measure]), measure
    if "exits" in ref_hist:  # churn: the same creators left and entered on both ranks
        assert float(ref_hist["exits"][-1].min()) > 0
        assert torch.equal(zero["history"]["exits"], ref_hist["exits"])


def test_all_reduced_creator_sums_agree_to_rounding(two_ranks: list[dict]) -> None:
    ref_chosen, ref_hist, ref = single_process("sampled")
    zero, one = two_ranks[0]["sampled/all-reduce"], two_ranks[1]["sampled/all-reduce"]
    assert torch.equal(torch.cat([zero["chosen"], one["chosen"]], dim=-1), ref_chosen)
    for rank in (zero, one):  # the all-reduce adds the ranks' partial sums: another order, same sums
        torch.testing.assert_close(rank["users"], ref.users, rtol=0, atol=1e-5)
        torch.testing.assert_close(rank["creators"], ref.creators, rtol=0, atol=1e-5)
        for measure in MEASURES:
            torch.testing.assert_close(rank["history"][measure], ref_hist[measure], rtol=1e-5, atol=1e-6)
    assert torch.equal(zero["creators"], one["creators"])


def test_two_ranks_follow_a_learned_recommenders_scores(two_ranks: list[dict]) -> None:
    ref = learned_run(Simulation)
    zero, one = two_ranks[0]["learned"], two_ranks[1]["learned"]
    assert torch.equal(torch.cat([zero["chosen"], one["chosen"]], dim=-1), ref["chosen"])
    for measure in MEASURES:
        torch.testing.assert_close(zero["history"][measure], ref["history"][measure], rtol=1e-5, atol=1e-6)


def test_each_rank_resumes_from_its_own_state_dict(two_ranks: list[dict]) -> None:
    for rank in two_ranks:
        assert rank["resume"]["t"] == 24
        assert torch.equal(rank["resume"]["original"], rank["resume"]["restored"])


def test_two_ranks_flag_polarization_over_all_users(two_ranks: list[dict]) -> None:
    for rank in two_ranks:
        assert rank["polar"]["first_polarized_step"].tolist() == [0]
