"""Creators come and go: the exit rule, the entrants, conservation, resume and replica independence."""

from __future__ import annotations

import math

import pytest
import torch

from rectest.sim import Dynamics, Policy, Simulation, State, random_sphere
from rectest.sim.churn import Churn


def _world(seed: int = 0, m: int = 40, n: int = 10, d: int = 4) -> State:
    gen = torch.Generator().manual_seed(seed)
    return State(random_sphere(1, m, d, gen, torch.float64), random_sphere(1, n, d, gen, torch.float64))


def test_a_creator_nobody_sees_leaves_after_the_window_and_only_then():
    """Users near e1 under top-1; creator 0 at -e1 is never shown: it leaves at the end of step W - 1."""
    gen = torch.Generator().manual_seed(1)
    users = torch.tensor([1.0, 0, 0]) + 0.1 * torch.randn(30, 3, generator=gen, dtype=torch.float64)
    creators = torch.tensor([[-1.0, 0, 0], [1, 0.1, 0], [1, -0.1, 0], [1, 0, 0.1]], dtype=torch.float64)
    state = State.of_unit(
        users[None] / users.norm(dim=-1, keepdim=True), creators[None] / creators.norm(dim=-1, keepdim=True)
    )
    churn = Churn(window=3, min_share=0.05, entrant="uniform")
    sim = Simulation(state, Policy(beta=math.inf), Dynamics(eta_u=0.0, eta_c=0.0), seeds=[0], churn=churn)
    for _ in range(3):
        assert int(sim.churn.exits[0]) == 0 and torch.equal(sim.creators[0, 0], state.creators[0, 0])
        sim.step()
    assert int(sim.churn.exits[0]) == 1  # only the unseen creator, once it is W steps old
    assert not torch.equal(sim.creators[0, 0], state.creators[0, 0])  # its slot holds an entrant
    assert torch.equal(sim.creators[0, 1:], state.creators[0, 1:])  # the others stay (eta_c = 0)
    assert int(sim.churn.age[0, 0]) == 0 and int(sim.churn.age[0, 1]) == 3


def test_the_population_is_conserved_on_the_sphere_and_exits_are_logged():
    churn = Churn(window=4, min_share=0.6, entrant="copy", noise=0.2)
    sim = Simulation(_world(), Policy(beta=3.0, k=3), Dynamics(), seeds=[0, 1, 2], churn=churn, log_every=5)
    hist = sim.run(60)
    assert sim.creators.shape == (3, 10, 4)
    norms = sim.creators.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-12)
    exits = hist["exits"]  # (L, R) cumulative
    assert exits.shape == hist["CD"].shape and bool((exits[1:] >= exits[:-1]).all())
    assert float(exits[-1].min()) > 0  # churn happened in every replica
    assert bool((exits[-1] <= sim.churn.exits.double()).all())  # the last log precedes the last step's exits


def test_a_copy_without_noise_is_a_staying_creator():
    churn = Churn(window=2, min_share=0.9, entrant="copy", noise=0.0)
    sim = Simulation(_world(2), Policy(beta=5.0, k=2), Dynamics(eta_u=0.0, eta_c=0.0), seeds=[4], churn=churn)
    before = sim.creators[0].clone()
    sim.run(2)
    left = (sim.churn.age[0] == 0).nonzero().flatten()
    assert len(left) > 0
    for i in left.tolist():  # every entrant equals one of the creators that stayed
        stayed = [j for j in range(10) if j not in left.tolist()]
        assert min(float((sim.creators[0, i] - before[j]).norm()) for j in stayed) < 1e-12


def test_resume_is_byte_identical_and_replicas_ignore_their_companions():
    churn = Churn(window=3, min_share=0.5, entrant="uniform")
    make = lambda seeds: Simulation(_world(), Policy(beta=2.0), Dynamics(), seeds=seeds, churn=churn)  # noqa: E731
    whole = make([0, 1])
    whole.run(30)
    first = make([0, 1])
    first.run(12)
    resumed = make([0, 1])
    resumed.load_state_dict(first.state_dict())
    resumed.run(18)
    assert torch.equal(resumed.creators, whole.creators) and torch.equal(resumed.users, whole.users)
    assert torch.equal(resumed.history["exits"], whole.history["exits"])
    alone = make([1])
    alone.run(30)
    assert torch.equal(alone.creators[0], whole.creators[1]) and int(alone.churn.exits[0]) > 0


def test_entrants_draw_from_their_own_generator_not_the_recommendations():
    plain = Simulation(_world(), Policy(beta=1.0), Dynamics(), seeds=[7])
    churned = Simulation(
        _world(), Policy(beta=1.0), Dynamics(), seeds=[7], churn=Churn(window=3, min_share=0.8)
    )
    quiet = Simulation(
        _world(), Policy(beta=1.0), Dynamics(), seeds=[7], churn=Churn(window=3, min_share=0.0)
    )
    for _ in range(20):
        assert torch.equal(plain.step(), quiet.step())  # min_share = 0: nobody leaves, nothing changes
        churned.step()
    assert int(churned.churn.exits[0]) > 0 and int(quiet.churn.exits[0]) == 0
    # entrants were drawn, yet the recommendation generator advanced exactly as without churn
    assert torch.equal(churned.generators[0].get_state(), plain.generators[0].get_state())
    assert not torch.equal(churned.churn.generators[0].get_state(), quiet.churn.generators[0].get_state())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"window": 0}, "sim.churn.window=0: expected a whole number >= 1"),
        ({"min_share": 1.5}, "sim.churn.min_share=1.5: expected a value in [0, 1]"),
        ({"entrant": "clone"}, "sim.churn.entrant='clone': expected one of uniform, copy"),
    ],
)
def test_bad_churn_settings_name_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Churn(**kwargs)
