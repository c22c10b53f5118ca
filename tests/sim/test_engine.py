"""The Simulation loop: agreement with a per-user loop, reproducibility, stable states, guards,
checkpoints and the recommender's view."""

import math

import pytest
import torch
from runs import whole_and_resumed
from sim_reference import update, user_probabilities

from rectest.sim import (
    MEASURES,
    Dynamics,
    Policy,
    Simulation,
    SimulationError,
    State,
    random_sphere,
    sample_inverse_cdf,
)


def small_state(gen, R=1, m=12, n=6, d=4, dtype=torch.float64):
    return State(random_sphere(R, m, d, gen, dtype=dtype), random_sphere(R, n, d, gen, dtype=dtype))


def test_deterministic_policy_agrees_exactly_with_the_per_user_loop(gen):
    state = small_state(gen, R=2, m=15, n=7)
    params = [dict(beta=math.inf), dict(beta=math.inf, tau=0.3)]
    sim = Simulation(
        state, Policy(beta=math.inf, tau=[-1.0, 0.3]), Dynamics(eta_u=0.2, eta_c=0.1), seeds=[0, 1]
    )
    U, V = state.users.clone(), state.creators.clone()
    for _ in range(25):
        chosen = sim.step()
        for r in range(2):
            s = U[r] @ V[r].T
            p = torch.stack([user_probabilities(s[j], V[r], **params[r]) for j in range(15)])
            deterministic = p.amax(-1) == 1
            assert torch.equal(chosen[r][deterministic], p.argmax(-1)[deterministic])
            U[r], V[r] = update(U[r], V[r], chosen[r], 0.2, 0.1)
        assert torch.allclose(sim.users, U, atol=1e-12) and torch.allclose(sim.creators, V, atol=1e-12)


def test_sampled_recommendations_follow_the_reference_probabilities(gen):
    state = small_state(gen, m=4, n=6)
    params = dict(beta=2.0, k=4, eps=0.1)
    sim = Simulation(state, Policy(**params), Dynamics(eta_u=0.0, eta_c=0.0), seeds=[7], log_every=10**6)
    T = 4000
    counts = torch.zeros(4, 6, dtype=torch.float64)
    for _ in range(T):
        counts[torch.arange(4), sim.step()[0]] += 1
    s = state.users[0] @ state.creators[0].T
    p = torch.stack([user_probabilities(s[j], state.creators[0], **params) for j in range(4)])
    chi2 = ((counts - T * p) ** 2 / (T * p)).sum().item()  # 4 users x 5 dof = 20 dof
    assert chi2 < 50  # P(chi2_20 > 50) ~ 2e-4


def test_equal_seeds_give_identical_trajectories_and_replicas_ignore_their_companions(gen):
    state = small_state(gen, m=30, n=9, dtype=torch.float32)
    dyn = Dynamics(eta_u=0.1, eta_c=0.2)
    alone = Simulation(state, Policy(beta=2.0, k=5), dyn, seeds=[11], chunk_size=7)
    batch = Simulation(
        state, Policy(beta=[0.5, 2.0, 2.0], k=[9, 5, 5]), dyn, seeds=[3, 11, 11], chunk_size=8192
    )
    alone.run(40)
    batch.run(40)
    assert torch.equal(batch.users[1], batch.users[2]) and torch.equal(batch.creators[1], batch.creators[2])
    assert torch.allclose(alone.users[0], batch.users[1], atol=1e-6)
    assert torch.allclose(alone.creators[0], batch.creators[1], atol=1e-6)
    assert torch.allclose(alone.history["TP"][:, 0], batch.history["TP"][:, 1], atol=1e-6)
    assert not torch.allclose(batch.users[0], batch.users[1])


def test_replica_blocks_and_chunks_do_not_change_trajectories(gen, monkeypatch):
    """On CPU each kind of policy is cut into blocks of replicas (engine._blocks): interleaved kinds (so
    blocks of scattered replicas), top-k lists, a threshold and uniform traffic give the same draws in blocks
    of 2 replicas x 10 users as in one chunk of the whole batch."""
    import rectest.sim.engine as engine

    state = small_state(gen, m=40, n=60, d=5, dtype=torch.float32)
    policy = Policy(
        beta=[1.0, 2.0, 1.0, 3.0, 1.5, 2.0, 0.5],
        k=[1, 60, 2, 60, 1, 2, 60],
        tau=[None] * 6 + [0.2],
        eps=[0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0],
    )
    dyn = Dynamics(eta_u=0.1, eta_c=0.2)
    seeds = [0, 1, 2, 3, 4, 5, 6]
    whole = Simulation(state, policy, dyn, seeds=seeds, log_every=3)
    whole.run(30)
    assert [rs for rs, _ in whole._blocks()] == [[0, 2, 4, 5], [1], [3], [6]]  # the kinds, not cut
    monkeypatch.setattr(engine, "CPU_MAX_CHUNK_ELEMENTS", 2 * 10 * 60)
    monkeypatch.setattr(engine, "CPU_MIN_CHUNK_ROWS", 10)
    blocked = Simulation(state, policy, dyn, seeds=seeds, log_every=3)
    assert [rs for rs, _ in blocked._blocks()] == [[0, 2], [4, 5], [1], [3], [6]]
    blocked.run(30)
    assert torch.equal(blocked.users, whole.users) and torch.equal(blocked.creators, whole.creators)
    for name in MEASURES:
        assert torch.allclose(blocked.history[name], whole.history[name], atol=1e-6), name


def test_infinite_beta_is_deterministic_across_seeds(gen):
    state = small_state(gen, m=20, n=8)
    sim = Simulation(state, Policy(beta=math.inf), Dynamics(), seeds=[0, 1, 2, 3])
    sim.run(30)
    for r in range(1, 4):
        assert torch.equal(sim.users[r], sim.users[0]) and torch.equal(sim.creators[r], sim.creators[0])


def test_norms_stay_on_the_sphere_for_ten_thousand_steps(gen):
    state = small_state(gen, m=10, n=5, d=3, dtype=torch.float32)
    sim = Simulation(
        state, Policy(beta=[1.0, 0.0]), Dynamics(eta_u=0.3, eta_c=0.5), seeds=[0, 1], log_every=10**6
    )
    sim.run(10_000)
    assert (sim.users.norm(dim=-1) - 1).abs().max() < 1e-5
    assert (sim.creators.norm(dim=-1) - 1).abs().max() < 1e-5


@pytest.mark.slow
def test_norm_drift_below_1e6_after_1e5_float32_steps(gen):
    state = small_state(gen, m=3, n=2, d=3, dtype=torch.float32)
    sim = Simulation(
        state, Policy(beta=1.0, eps=0.5), Dynamics(eta_u=0.3, eta_c=0.4), seeds=[5], log_every=10**6
    )
    sim.run(100_000)
    assert (sim.users.norm(dim=-1) - 1).abs().max() < 1e-6
    assert (sim.creators.norm(dim=-1) - 1).abs().max() < 1e-6


def test_huge_beta_never_produces_nan(gen):
    state = small_state(gen, m=40, n=10, d=5, dtype=torch.float32)
    policy = Policy(beta=1e4, k=[10, 3, 10], tau=[-1.0, -1.0, 0.2])
    sim = Simulation(state, policy, Dynamics(), seeds=[0, 1, 2])
    hist = sim.run(200)
    assert all(torch.isfinite(hist[name]).all() for name in MEASURES)
    assert torch.isfinite(sim.users).all() and torch.isfinite(sim.creators).all()


def test_floor_n_over_k_cluster_state_under_top_k_does_not_move():
    d, k, clusters = 6, 3, 4
    centres = torch.eye(d, dtype=torch.float64)[:clusters]  # orthogonal cluster centres
    creators = centres.repeat_interleave(k, 0).unsqueeze(0)  # (1, n = 12, d): floor(12 / 3) = 4 clusters
    users = centres.repeat_interleave(5, 0).unsqueeze(0)  # every user sits on a cluster
    sim = Simulation(State(users, creators), Policy(beta=1.0, k=k), Dynamics(eta_u=0.3, eta_c=0.3), seeds=[0])
    hist = sim.run(100)
    assert torch.allclose(sim.users, users, atol=1e-12) and torch.allclose(sim.creators, creators, atol=1e-12)
    assert (hist["clusters"] == clusters).all()


def test_simplex_state_under_threshold_zero_does_not_move():
    d = 4
    vertices = torch.eye(d + 1, dtype=torch.float64) - 1 / (d + 1)  # regular simplex in a d-dim subspace
    basis = torch.linalg.qr(vertices.T)[0][:, :d]  # (d + 1, d) orthonormal basis of that subspace
    simplex = torch.nn.functional.normalize(vertices @ basis, dim=-1)  # (d + 1, d), pairwise cos -1/d
    assert torch.allclose(
        simplex @ simplex.T,
        torch.full((d + 1, d + 1), -1 / d, dtype=torch.float64)
        + (1 + 1 / d) * torch.eye(d + 1, dtype=torch.float64),
    )
    state = State(simplex.repeat(3, 1).unsqueeze(0), simplex.repeat(2, 1).unsqueeze(0))
    sim = Simulation(state, Policy(beta=1.0, tau=0.0), Dynamics(eta_u=0.3, eta_c=0.3), seeds=[0, 1])
    hist = sim.run(100)
    assert torch.allclose(sim.users, state.users.expand(2, -1, -1), atol=1e-12)
    assert torch.allclose(sim.creators, state.creators.expand(2, -1, -1), atol=1e-12)
    assert (hist["clusters"] == d + 1).all()


def test_zero_rates_are_static(gen):
    state = small_state(gen, dtype=torch.float32)
    sim = Simulation(state, Policy(beta=1.0), Dynamics(eta_u=0.0, eta_c=0.0), seeds=[0])
    hist = sim.run(100)
    assert torch.allclose(sim.users, state.users, atol=1e-6) and torch.allclose(
        sim.creators, state.creators, atol=1e-6
    )
    assert torch.allclose(hist["TP"], hist["TP"][:1].expand_as(hist["TP"]), atol=1e-6)


def test_nan_guard_names_the_step_and_the_replica(gen):
    calls = {"n": 0}

    def poisoned(s):  # replica 1 turns to NaN at its fourth call (step 3)
        calls["n"] += 1
        out = torch.sign(s)
        if calls["n"] == 4:
            out = out.clone()
            out[1] = math.nan
        return out

    sim = Simulation(small_state(gen, R=3), Policy(), Dynamics(f=poisoned), seeds=[10, 20, 30])
    with pytest.raises(SimulationError, match=r"step 3 in replica\(s\) \[1\] \(seeds \[20\]\)"):
        sim.run(10)
    assert sim.t == 3 and torch.isfinite(sim.users).all()  # the state before the bad step is kept


def test_checkpoint_resumes_bit_identically(gen):
    state = small_state(gen, R=1, m=25, n=8, dtype=torch.float32)
    args = (Policy(beta=[1.0, 3.0], k=[8, 3], eps=0.05), Dynamics(eta_u=0.1, eta_c=0.2))
    whole, first, resumed = whole_and_resumed(state, args, [1, 2], log_every=3, stop=9, steps=20)
    assert resumed.t == 20
    assert torch.equal(resumed.users, whole.users) and torch.equal(resumed.creators, whole.creators)
    assert torch.equal(resumed.first_polarized_step, whole.first_polarized_step)
    a, b = resumed.history, whole.history
    keep = b["step"] != 8  # the interrupted run also logged its own last step (8)
    assert torch.equal(a["step"][a["step"] != 8], b["step"][keep])
    for name in MEASURES:
        assert torch.equal(a[name][a["step"] != 8], b[name][keep]), name
    with pytest.raises(ValueError, match="seeds"):
        Simulation(state, *args, seeds=[1, 3]).load_state_dict(first.state_dict())


def test_history_cadence_and_final_step(gen):
    sim = Simulation(small_state(gen, R=2), Policy(), Dynamics(), seeds=[0, 1], log_every=4)
    hist = sim.run(10)
    assert hist["step"].tolist() == [0, 4, 8, 9]
    assert all(hist[name].shape == (4, 2) for name in MEASURES)
    assert sim.t == 10
    sim.step()  # t = 10: not a multiple of 4
    sim.step(log=True)  # t = 11: logged on request
    assert sim.history["step"].tolist() == [0, 4, 8, 9, 11]


def test_first_polarized_step_is_recorded(gen):
    state = small_state(gen, m=30, n=10, d=3)
    sim = Simulation(state, Policy(beta=0.0), Dynamics(eta_u=0.1, eta_c=0.2), seeds=[0, 1], r_polarized=0.05)
    hist = sim.run(400)
    first = sim.first_polarized_step
    assert (first > 0).all()
    for r in range(2):
        logged = hist["polarized"][:, r]
        assert logged[: first[r]].sum() == 0 and logged[first[r]] == 1


def test_first_polarized_step_is_found_between_logged_steps(gen):
    """Unlogged steps check only the replicas not yet polarized, and find the same first step as a run that logs
    every step (replicas that polarize at different times, and one that never does)."""
    state = small_state(gen, m=30, n=10, d=3)
    dyn = Dynamics(eta_u=[0.1, 0.3, 0.0], eta_c=[0.2, 0.3, 0.0])

    def run(log_every: int) -> Simulation:
        sim = Simulation(state, Policy(beta=0.0), dyn, seeds=[0, 1, 2], r_polarized=0.05, log_every=log_every)
        sim.run(300)
        return sim

    every, rarely = run(1), run(1000)
    first = every.first_polarized_step.tolist()
    assert first[0] > first[1] > 0 and first[2] == -1  # two polarize at different steps, the frozen one never
    assert rarely.first_polarized_step.tolist() == first


def test_learned_scores_drive_the_policy_but_not_the_truth(gen):
    state = small_state(gen, m=20, n=8)
    oracle = Simulation(state, Policy(beta=math.inf), Dynamics(), seeds=[0])
    same = Simulation(state, Policy(beta=math.inf), Dynamics(), seeds=[0])
    oracle.step()
    same.step(score_users=3 * state.users, score_creators=state.creators[0])  # same cosines: same result
    assert torch.equal(oracle.users, same.users)
    wrong = Simulation(state, Policy(beta=math.inf), Dynamics(), seeds=[0])
    fake_u, fake_c = (
        random_sphere(1, 20, 5, gen, dtype=torch.float64),
        random_sphere(1, 8, 5, gen, dtype=torch.float64),
    )
    chosen = wrong.step(score_users=fake_u, score_creators=fake_c)
    assert torch.equal(chosen[0], (fake_u[0] @ fake_c[0].T).argmax(-1))
    true_s = state.users[0] @ state.creators[0].T
    assert wrong.history["RR"][0, 0].item() == pytest.approx(
        true_s[torch.arange(20), chosen[0]].mean().item()
    )


def test_simulation_refuses_inconsistent_arguments(gen):
    with pytest.raises(ValueError, match="3 replicas but seeds has 2"):
        Simulation(small_state(gen, R=3), Policy(), Dynamics(), seeds=[0, 1])
    with pytest.raises(ValueError, match="eta_u has 2 values"):
        Simulation(small_state(gen), Policy(), Dynamics(eta_u=[0.1, 0.2]), seeds=[0, 1, 2])
    with pytest.raises(ValueError, match="log_every=0"):
        Simulation(small_state(gen), Policy(), Dynamics(), seeds=[0], log_every=0)


@pytest.mark.gpu
def test_cuda_matches_cpu_for_a_deterministic_policy(gen):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    state = small_state(gen, m=50, n=20, d=6, dtype=torch.float64)
    cuda_state = State(state.users.cuda(), state.creators.cuda())
    cpu = Simulation(state, Policy(beta=math.inf), Dynamics(), seeds=[0])
    gpu = Simulation(cuda_state, Policy(beta=math.inf), Dynamics(), seeds=[0])
    cpu.run(20)
    gpu.run(20)
    assert torch.allclose(gpu.users.cpu(), cpu.users, atol=1e-9)
    sampled = Simulation(
        State(cuda_state.users, cuda_state.creators), Policy(beta=1.0, k=5), Dynamics(), seeds=[0, 1]
    )
    hist = sampled.run(20)
    assert hist["TP"].device.type == "cpu" and torch.isfinite(hist["TP"]).all()


def test_pure_top_k_shortcut_draws_what_the_general_path_draws(gen):
    state = small_state(gen, R=1, m=200, n=40, d=5, dtype=torch.float64)
    policy = Policy(beta=[0.0, 1.0, 3.0], k=[1, 7, 39]).bind(3, 40, torch.device("cpu"), torch.float64)
    assert policy.topk_only
    scores = state.users.expand(3, -1, -1) @ state.creators.expand(3, -1, -1).transpose(1, 2)
    u = torch.rand(3, 200, generator=gen, dtype=torch.float64)
    general, _ = sample_inverse_cdf(policy.weights(scores, state.creators.expand(3, -1, -1)), u)
    assert torch.equal(policy.sample_top_k(scores, u), general)
    tied = scores.clone()
    tied[0, 0, :2] = 2.0  # two creators share the top score of user 0: both eligible under k = 1
    tied[1, 5:40, :9] = 1.5  # nine share user j's top score under k = 7, for 35 users
    tied_general, _ = sample_inverse_cdf(policy.weights(tied, state.creators.expand(3, -1, -1)), u)
    assert torch.equal(policy.sample_top_k(tied, u), tied_general)  # the tied rows drawn as the general path
    firsts = {int(policy.sample_top_k(tied, torch.full_like(u, x))[0, 0]) for x in (0.1, 0.9)}
    assert firsts == {0, 1}  # both tied creators can be drawn (beta = 0: uniform over the two)
    # in the engine: unlogged steps take the shortcut, logged ones the general path; same trajectory
    for policy in (Policy(beta=1.0, k=5), Policy(beta=2.0)):  # top-k and plain-softmax shortcuts
        sims = [Simulation(state, policy, Dynamics(), seeds=[3], log_every=every) for every in (1, 10**6)]
        for sim in sims:
            sim.run(30)
        assert torch.allclose(sims[0].users, sims[1].users, atol=1e-12)


def test_a_k_sweep_with_no_truncation_samples_as_the_general_path_does():
    """Short top-k lists batched with k = n replicas take the k-list path, the k = n replicas the folded
    softmax: the same draws as every replica on full rows (float64, so rounding cannot flip a draw)."""
    gen = torch.Generator().manual_seed(3)
    state = State(random_sphere(1, 60, 5, gen, torch.float64), random_sphere(1, 40, 5, gen, torch.float64))
    dyn = Dynamics(eta_u=0.1, eta_c=0.1)
    for policy in (Policy(beta=1.0, k=[1, 3, 10, 40, 40]), Policy(beta=[0.5, 2.0, 1.0], k=[5, 40, 25])):
        seeds = list(range(len(policy.k)))
        split = Simulation(state, policy, dyn, seeds=seeds, log_every=10**6)
        general = Simulation(state, policy, dyn, seeds=seeds, log_every=10**6)
        assert split.policy.parts is not None
        general.policy.parts = None  # every replica on full rows, one batch
        for _ in range(30):
            assert torch.equal(split.step(), general.step())
        assert torch.equal(split.users, general.users) and torch.equal(split.creators, general.creators)


def test_a_batch_of_every_kind_of_policy_runs_each_replica_as_it_runs_alone():
    """The frontier batches softmax, top-k, threshold, uniform traffic, rho and MMR replicas: each kind is
    computed on its own replicas, so a replica's trajectory is the one it has alone (logged and unlogged
    steps; float64, so rounding cannot flip a draw)."""
    gen = torch.Generator().manual_seed(5)
    state = State(random_sphere(1, 50, 4, gen, torch.float64), random_sphere(1, 30, 4, gen, torch.float64))
    settings = [
        {"beta": 2.0},
        {"beta": 1.0, "k": 3},
        {"beta": 1.0, "k": 20},
        {"beta": 1.0, "tau": 0.5},
        {"beta": 1.0, "k": 5, "eps": 0.1},
        {"beta": 1.0, "rho": 1.0},
        {"beta": 1.0, "k": 5, "mmr_lambda": 0.5},
        {"beta": math.inf},
    ]
    keys = ("beta", "k", "tau", "eps", "rho", "mmr_lambda")
    off = {"k": None, "tau": None, "eps": 0.0, "rho": 0.0, "mmr_lambda": None}
    batch = Policy(**{key: [s.get(key, off.get(key)) for s in settings] for key in keys})
    seeds = list(range(10, 10 + len(settings)))
    together = Simulation(state, batch, Dynamics(), seeds=seeds, log_every=3)
    assert together.policy.parts is not None and len(together.policy.parts) == len(settings)
    together.run(12)
    for r, setting in enumerate(settings):
        alone = Simulation(state, Policy(**setting), Dynamics(), seeds=[seeds[r]], log_every=3)
        alone.run(12)
        assert torch.equal(alone.users[0], together.users[r]), setting
        assert torch.equal(alone.creators[0], together.creators[r]), setting
        assert torch.allclose(alone.history["RD"][:, 0], together.history["RD"][:, r], atol=1e-12), setting
