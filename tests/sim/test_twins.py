"""Twin replicas (rectest.sim.twins): seeds of an argmax policy from one start are simulated once, and every
replica's trajectory is the one it has when simulated alone, ties at the top included."""

import io

import torch

from rectest.sim import Dynamics, Policy, Simulation, State, random_sphere


def start(gen, m=30, n=40, d=5, duplicated=False):
    creators = random_sphere(1, n, d, gen)
    if duplicated:  # creators 2i and 2i + 1 are the same vector: every user's top score is tied
        creators = creators[:, : n // 2].repeat_interleave(2, 1)
    return State(random_sphere(1, m, d, gen), creators)


def alone(state, k, seed, steps):
    sim = Simulation(state, Policy(beta=1.0, k=k), Dynamics(eta_u=0.1, eta_c=0.2), seeds=[seed], log_every=2)
    draws = torch.stack([sim.step() for _ in range(steps)])  # (T, 1, m)
    return sim, draws[:, 0]


def test_argmax_seeds_follow_the_first_and_match_their_runs_alone(gen):
    state = start(gen)
    ks, seeds = [1, 1, 5, 1], [0, 1, 2, 3]
    sim = Simulation(state, Policy(beta=1.0, k=ks), Dynamics(eta_u=0.1, eta_c=0.2), seeds=seeds, log_every=2)
    assert sim.twins.followers == {1: 0, 3: 0}
    draws = torch.stack([sim.step() for _ in range(25)])  # (T, R, m)
    assert sim.twins.followers == {1: 0, 3: 0}  # no tie: they stay followers
    for r, (k, seed) in enumerate(zip(ks, seeds, strict=True)):
        one, own = alone(state, k, seed, 25)
        assert torch.equal(draws[:, r], own)
        assert torch.allclose(sim.users[r], one.users[0], atol=1e-6)
        for name in ("CD", "RD", "RR", "TP", "UD", "clusters"):
            assert torch.allclose(sim.history[name][:, r], one.history[name][:, 0], atol=1e-6), name


def test_a_tie_at_the_top_is_drawn_by_each_seed_and_the_seeds_part(gen):
    state = start(gen, duplicated=True)
    seeds = [0, 1, 2]
    sim = Simulation(state, Policy(beta=1.0, k=1), Dynamics(eta_u=0.1, eta_c=0.2), seeds=seeds, log_every=2)
    assert sim.twins.followers == {1: 0, 2: 0}
    first = sim.step()  # (R, m): every user's top is a pair of equal creators
    assert not sim.twins  # the seeds drew different members of some pair
    draws = torch.cat([first[None], torch.stack([sim.step() for _ in range(9)])])  # (T, R, m)
    for r, seed in enumerate(seeds):
        one, own = alone(state, 1, seed, 10)
        assert torch.equal(draws[:, r], own)
        assert torch.allclose(sim.users[r], one.users[0], atol=1e-6)


def test_twins_resume_bit_identically(gen):
    state = start(gen)
    args = (Policy(beta=1.0, k=[1, 1, 3]), Dynamics(eta_u=0.1, eta_c=0.2))
    whole = Simulation(state, *args, seeds=[4, 5, 6], log_every=3)
    whole.run(20)
    first = Simulation(state, *args, seeds=[4, 5, 6], log_every=3)
    first.run(9)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = Simulation(state, *args, seeds=[4, 5, 6], log_every=3)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.twins.followers == {1: 0}
    resumed.run(11)
    assert torch.equal(resumed.users, whole.users) and torch.equal(resumed.creators, whole.creators)


def test_different_starts_or_dynamics_are_not_twins(gen):
    state = State(random_sphere(2, 10, 4, gen), random_sphere(2, 30, 4, gen))
    sim = Simulation(state, Policy(beta=1.0, k=1), Dynamics(), seeds=[0, 1])
    assert not sim.twins
    one = start(gen, m=10, n=30, d=4)
    sim = Simulation(one, Policy(beta=1.0, k=1), Dynamics(eta_u=[0.1, 0.2]), seeds=[0, 1])
    assert not sim.twins
    sim = Simulation(one, Policy(beta=[1.0, 2.0], k=1), Dynamics(), seeds=[0, 1])
    assert not sim.twins
