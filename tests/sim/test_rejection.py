"""Rejection sampling (rectest.sim.rejection): exact against the dense probabilities, the full-row fallback
included, and a replica's draws independent of its companions, the chunking and the logging cadence."""

import math

import pytest
import torch
from runs import whole_and_resumed
from sim_reference import user_probabilities

from rectest.sim import Dynamics, Policy, Simulation, State, policies, random_sphere, select
from rectest.sim.engine import SAMPLERS
from rectest.sim.errors import SimulationError
from rectest.sim.policies import REJECTION_MAX_BETA
from rectest.sim.rejection import PROPOSALS, draw_truncated, sample_by_rejection


@pytest.fixture(autouse=True)
def small_worlds_reject(monkeypatch):
    """These tests use a few creators; the engine draws by rejection from REJECTION_MIN_CREATORS on."""
    monkeypatch.setattr(policies, "REJECTION_MIN_CREATORS", 1)


def chi_square(counts: torch.Tensor, p: torch.Tensor) -> tuple[float, int]:
    """Pearson's statistic over the cells with positive probability, and its degrees of freedom."""
    T = counts.sum(-1, keepdim=True)
    live = p > 0
    assert counts[~live].sum() == 0  # a zero-probability creator is never drawn
    stat = ((counts - T * p) ** 2 / (T * p).clamp_min(1e-300))[live].sum().item()
    return stat, int(live.sum() - p.shape[0])


def draw_counts(policy: Policy, users, creators, trials: int, gen) -> torch.Tensor:
    """``(R, m, n)`` counts of ``trials`` rejection draws per user (fresh proposals every trial)."""
    R, m, _ = users.shape
    n = creators.shape[1]
    bound = policy.bind(R, n, torch.device("cpu"), users.dtype)
    assert bound.rejects
    counts = torch.zeros(R, m, n, dtype=torch.float64)
    for _ in range(trials):
        draws = torch.rand(R, m, PROPOSALS, generator=gen, dtype=torch.float64)
        uniforms = torch.rand(R, m, generator=gen, dtype=users.dtype)
        picks = sample_by_rejection(bound, users, creators, draws, uniforms, chunk_rows=3)
        counts.scatter_add_(-1, picks.unsqueeze(-1), torch.ones(R, m, 1, dtype=torch.float64))
    return counts


@pytest.mark.parametrize(
    "dtype", [torch.float64, torch.float32]
)  # float32: the compiled fallback of thresholds
@pytest.mark.parametrize(
    "params",
    [
        {"beta": [0.0, 1.0, REJECTION_MAX_BETA]},  # uniform, the paper's beta, the largest rejected beta
        {"beta": 2.0, "tau": [0.2, 0.95]},  # a threshold; 0.95 leaves most users nothing: uniform fallback
        {"beta": [1.0, 3.0], "eps": [0.3, 1.0]},  # uniform traffic: the mixture, and nothing but uniform
        {"beta": 2.0, "tau": [0.6, 0.95], "eps": 0.2},  # uniform traffic over a threshold and its fallback
    ],
)
def test_rejection_draws_follow_the_dense_probabilities(params, dtype):
    gen = torch.Generator().manual_seed(11)
    R = len(next(v for v in params.values() if isinstance(v, list)))
    m, n, d = 6, 9, 3
    users = random_sphere(R, m, d, gen, dtype)
    creators = random_sphere(R, n, d, gen, dtype)
    users[:, 0] = -creators[:, 0]  # a user opposite a creator: low acceptance, often the full-row fallback
    counts = draw_counts(Policy(**params), users, creators, 3000, gen)
    for r in range(R):
        one = {key: (v[r] if isinstance(v, list) else v) for key, v in params.items()}
        s = users[r] @ creators[r].T
        p = torch.stack([user_probabilities(s[j], creators[r], **one) for j in range(m)])
        stat, dof = chi_square(counts[r], p)
        assert stat < dof + 6 * math.sqrt(2 * dof), (one, stat, dof)  # about 6 sigma


def test_users_who_reject_every_proposal_are_drawn_from_their_full_rows():
    """beta = 4 and every creator opposite the user: acceptance e^-8, so all users fall back; their draws
    are the inverse-CDF draws of the policy's weights with the step's uniforms."""
    gen = torch.Generator().manual_seed(2)
    creators = random_sphere(1, 7, 3, gen, torch.float64)
    axis = creators[0].mean(0)
    creators = torch.nn.functional.normalize(creators[0] + 5 * axis, dim=-1).unsqueeze(0)  # a tight cap
    users = -creators[:, :5].clone()  # each user opposite the cap
    bound = Policy(beta=4.0).bind(1, 7, torch.device("cpu"), torch.float64)
    draws = torch.full((1, 5, PROPOSALS), 0.999, dtype=torch.float64)  # frac(0.999 * 7) = 0.993: rejected
    uniforms = torch.rand(1, 5, generator=gen, dtype=torch.float64)
    picks = sample_by_rejection(bound, users, creators, draws, uniforms, chunk_rows=2)
    w = torch.exp(4.0 * (users @ creators.transpose(1, 2)))  # (1, 5, 7)
    cdf = w.cumsum(-1) / w.sum(-1, keepdim=True)
    expected = (cdf <= uniforms.unsqueeze(-1)).sum(-1)  # inverse CDF
    assert torch.equal(picks, expected)


def test_rejected_replicas_ignore_companions_chunks_and_logging():
    gen = torch.Generator().manual_seed(4)
    state = State(random_sphere(1, 40, 4, gen), random_sphere(1, 25, 4, gen))
    dyn = Dynamics(eta_u=0.1, eta_c=0.1)
    alone = Simulation(state, Policy(beta=1.0, tau=0.3), dyn, seeds=[5], chunk_size=3, log_every=1)
    batch = Simulation(
        state, Policy(beta=[1.0, 8.0, 1.0], k=[25, 25, 4], tau=[0.3, None, None]), dyn, seeds=[5, 6, 7]
    )
    batch.log_every = 10**6
    assert [bool(p.rejects) for _, p in batch.policy.parts] == [True, False, False]
    for _ in range(30):
        assert torch.equal(alone.step()[0], batch.step()[0])
    assert torch.equal(alone.users[0], batch.users[0]) and torch.equal(alone.creators[0], batch.creators[0])


def test_the_inverse_cdf_sampler_is_the_full_row_draw():
    """sampler="inverse_cdf" draws every replica from its full row: the folded-softmax shortcut and the
    general path agree, and the rejection sampler's trajectory differs (other draws, same distribution)."""
    gen = torch.Generator().manual_seed(8)
    state = State(random_sphere(1, 30, 4, gen, torch.float64), random_sphere(1, 12, 4, gen, torch.float64))
    runs = {}
    for sampler in ("rejection", "inverse_cdf"):
        for every in (1, 10**6):
            sim = Simulation(state, Policy(beta=2.0), Dynamics(), seeds=[1], log_every=every, sampler=sampler)
            sim.run(20)
            runs[sampler, every] = sim.users
    assert torch.allclose(runs["inverse_cdf", 1], runs["inverse_cdf", 10**6], atol=1e-12)
    assert torch.equal(runs["rejection", 1], runs["rejection", 10**6])
    assert not torch.allclose(runs["rejection", 1], runs["inverse_cdf", 1])
    with pytest.raises(ValueError, match="sampler='gibbs'"):
        Simulation(state, Policy(), Dynamics(), seeds=[0], sampler="gibbs")


def test_small_worlds_keep_their_full_row_draws(monkeypatch):
    """Below REJECTION_MIN_CREATORS the rejection sampler draws as the inverse-CDF one: same trajectory."""
    monkeypatch.setattr(policies, "REJECTION_MIN_CREATORS", 13)
    gen = torch.Generator().manual_seed(9)
    state = State(random_sphere(1, 20, 4, gen, torch.float64), random_sphere(1, 12, 4, gen, torch.float64))
    sims = [Simulation(state, Policy(beta=1.0), Dynamics(), seeds=[2], sampler=s) for s in SAMPLERS]
    assert not sims[0].rejecting
    for sim in sims:
        sim.run(15)
    assert torch.equal(sims[0].users, sims[1].users)


native = pytest.mark.skipif(
    not select.available(torch.device("cpu"), torch.float32),
    reason="no C compiler here (or RECTEST_NATIVE=0): the truncated draw runs in torch alone",
)


@pytest.fixture
def long_lists(monkeypatch):
    """These tests use short lists; the engine draws pure top-k by the truncated draw beyond TOPK_LIST_MAX."""
    monkeypatch.setattr(policies, "TOPK_LIST_MAX", 4)


@pytest.mark.parametrize("compiled", [True, False])  # the kernel, or its torch twin (CUDA, no compiler)
@pytest.mark.parametrize(
    "params",
    [
        {"beta": [1.0, REJECTION_MAX_BETA, 0.0], "k": [17, 20, 30]},  # top-k beyond the lists (one kind)
        {
            "beta": 2.0,
            "k": [20, 30],
            "tau": [0.2, 0.9],
        },  # with a threshold; 0.9 often leaves nothing: uniform
        {"beta": [1.0, 3.0], "k": [10, 4], "eps": [0.3, 1.0]},  # uniform traffic: the mixture, and only it
    ],
)
def test_truncated_draws_follow_the_dense_probabilities(params, compiled, long_lists, monkeypatch):
    """The engine's truncated draw (top-k with a threshold and uniform traffic) against the reference
    probabilities: chi-square of 3,000 draws per user."""
    if compiled and not select.available(torch.device("cpu"), torch.float32):
        pytest.skip("no C compiler here (or RECTEST_NATIVE=0): the kernel cannot be built")
    if not compiled:
        monkeypatch.setattr(select, "available", lambda device, dtype: False)
    gen = torch.Generator().manual_seed(12)
    R = len(next(v for v in params.values() if isinstance(v, list)))
    m, n, d, trials = 5, 40, 3, 3000
    users = random_sphere(R, m, d, gen)
    creators = random_sphere(R, n, d, gen)
    bound = Policy(**params).bind(R, n, torch.device("cpu"), torch.float32)
    assert bound.draws_truncated
    scores = users @ creators.transpose(1, 2)  # (R, m, n)
    counts = torch.zeros(R, m, n, dtype=torch.float64)
    for _ in range(trials):
        draws = torch.rand(R, m, PROPOSALS, generator=gen, dtype=torch.float64)
        picks, thresholds = draw_truncated(
            bound, scores, torch.rand(R, m, generator=gen), draws
        )  # (R, m) each
        # the weights from the draw's thresholds are the policy's own, bit for bit
        assert torch.equal(bound.weights_above(scores, thresholds), bound.weights(scores, creators))
        counts.scatter_add_(-1, picks.unsqueeze(-1), torch.ones(R, m, 1, dtype=torch.float64))
    for r in range(R):
        one = {key: (v[r] if isinstance(v, list) else v) for key, v in params.items()}
        p = torch.stack([user_probabilities(scores[r, j], creators[r], **one) for j in range(m)])
        stat, dof = chi_square(counts[r], p)
        assert stat < dof + 6 * math.sqrt(2 * dof), (one, stat, dof)


def test_truncated_replicas_ignore_companions_chunks_and_logging():
    """A top-k replica drawn by the compiled truncated draw follows the same trajectory alone (logged every
    step, chunks of 3 users) and in a batch with other kinds of policy (unlogged, one chunk)."""
    gen = torch.Generator().manual_seed(6)
    state = State(random_sphere(1, 40, 4, gen), random_sphere(1, 30, 4, gen))
    dyn = Dynamics(eta_u=0.1, eta_c=0.1)
    alone = Simulation(state, Policy(beta=1.0, k=20, eps=0.1), dyn, seeds=[5], chunk_size=3, log_every=1)
    batch = Simulation(
        state, Policy(beta=[1.0, 8.0, 1.0], k=[20, 20, 4], eps=[0.1, 0.0, 0.0]), dyn, seeds=[5, 6, 7]
    )
    batch.log_every = 10**6
    assert [bool(p.draws_truncated) for _, p in batch.policy.parts] == [True, False, False]
    for _ in range(30):
        assert torch.equal(alone.step()[0], batch.step()[0])
    assert torch.equal(alone.users[0], batch.users[0]) and torch.equal(alone.creators[0], batch.creators[0])
    assert torch.isfinite(alone.history["RD"]).all() and torch.isfinite(alone.history["RR"]).all()


def test_truncated_draws_resume_bit_identically_and_differ_from_the_inverse_cdf_sampler(long_lists):
    gen = torch.Generator().manual_seed(3)
    state = State(random_sphere(1, 30, 4, gen), random_sphere(1, 25, 4, gen))
    args = (Policy(beta=[1.0, 2.0], k=[15, 10], tau=[0.1, None]), Dynamics(eta_u=0.1, eta_c=0.2))
    whole, _, resumed = whole_and_resumed(state, args, [1, 2], log_every=4, stop=9, steps=20)
    assert all(part.draws_truncated for _, part in whole.policy.kinds())
    assert torch.equal(resumed.users, whole.users) and torch.equal(resumed.creators, whole.creators)
    full_rows = Simulation(state, *args, seeds=[1, 2], log_every=4, sampler="inverse_cdf")
    full_rows.run(20)
    assert not torch.equal(full_rows.users, whole.users)  # other draws (the same distribution)


@pytest.mark.parametrize("policy", [Policy(beta=1.0, k=12), Policy(beta=1.0, tau=0.2), Policy(beta=1.0)])
def test_a_nan_score_of_a_rejection_replica_is_reported(policy, long_lists):
    """A NaN in a recommender's scores (the true vectors finite) is reported, not drawn as creator -1 or as
    some creator: the truncated draw, and the full-row fallback of rejection sampling (threshold, softmax)."""
    gen = torch.Generator().manual_seed(4)
    state = State(random_sphere(2, 10, 3, gen), random_sphere(2, 20, 3, gen))
    sim = Simulation(state, policy, Dynamics(), seeds=[1, 2], log_every=10**6)
    assert sim.policy.draws_truncated or sim.policy.rejects
    sim.step()
    learned = sim.creators.clone()
    learned[1, 4] = (
        math.nan
    )  # replica 1's scores of creator 4 turn to NaN (the truncated draw reads every score)
    if not sim.policy.draws_truncated:
        learned[1] = math.nan  # (rejection sampling reads the proposals' scores: all of replica 1's are NaN)
    with pytest.raises(SimulationError, match=r"recommendation weights at step 1 in replica\(s\) \[1\]"):
        sim.step(score_users=sim.users.clone(), score_creators=learned)


@native
def test_the_torch_truncated_draw_equals_the_kernel():
    """The torch twin of the kernel (CUDA, float64, no compiler) draws the same creators with the same
    thresholds: rows with ties, a NaN, no truncation, thresholds that leave nothing, beta = 0; 0, 1 and 16
    proposals."""
    gen = torch.Generator().manual_seed(0)
    for n in (7, 50, 300):
        B = 600
        s = torch.rand(B, n, generator=gen) * 2 - 1
        s[::7, : n // 3] = 0.25  # ties
        s[5, 3] = math.nan
        k = torch.randint(1, n + 1, (B,), generator=gen)
        k[::3] = n
        tau = torch.where(
            torch.rand(B, generator=gen) < 0.3, torch.rand(B, generator=gen) * 1.2 - 0.2, -math.inf
        )
        beta = torch.rand(B, generator=gen) * 3
        beta[::11] = 0
        u = torch.rand(B, generator=gen)
        for L in (0, 1, 16):
            p = None if L == 0 else torch.rand(B, L, generator=gen, dtype=torch.float64)
            a, ta = select.draw_truncated(s, k, tau, beta, u, p)
            b, tb = select._draw_truncated_torch(s, k, tau, beta.double(), u.double(), p)
            assert torch.equal(a, b), (n, L)
            assert torch.equal(ta.nan_to_num(7.0), tb.nan_to_num(7.0)), (n, L)
            assert a[5] == -1 and bool((a[torch.arange(B) != 5] >= 0).all())
