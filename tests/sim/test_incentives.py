"""What creators want (beyond the paper): the exposure and engagement rules climb the gradient of the
creator's objective under the current policy; tested against autograd and for the dynamics' invariants."""

from __future__ import annotations

import math

import pytest
import torch

from rectest.sim import Dynamics, Policy, Simulation, State, random_sphere
from rectest.sim.incentives import creator_gradient

SETTINGS = [  # (policy, rule), one replica each
    ({"beta": 2.0}, "exposure"),
    ({"beta": 1.0, "k": 3}, "engagement"),
    ({"beta": 1.5, "tau": 0.3}, "exposure"),
    ({"beta": 1.0, "k": 4, "eps": 0.2}, "engagement"),
    ({"beta": 3.0, "tau": 0.95}, "engagement"),  # most users have nothing eligible: uniform, no gradient
    ({"beta": math.inf}, "engagement"),
]
OFF = {"k": None, "tau": None, "eps": 0.0}


def _batch_policy() -> Policy:
    return Policy(
        **{key: [s.get(key, OFF.get(key, 1.0)) for s, _ in SETTINGS] for key in ("beta", "k", "tau", "eps")}
    )


def _reference(users: torch.Tensor, creators: torch.Tensor, setting: dict, rule: str) -> torch.Tensor:
    """Row i: d/dv_i of creator i's own (n/m) sum_j p_ij [s_ij] by autograd, eligible sets held fixed."""
    m, n = users.shape[0], creators.shape[0]
    v = creators.clone().requires_grad_(True)
    s = users @ v.T  # (m, n)
    beta, k, tau, eps = (setting.get(key, OFF.get(key)) for key in ("beta", "k", "tau", "eps"))
    frozen = s.detach()
    keep = torch.ones_like(frozen, dtype=torch.bool)
    if k is not None:
        keep &= frozen >= frozen.topk(k, dim=1).values[:, -1:]
    if tau is not None:
        keep &= frozen >= tau
    if math.isinf(beta):
        q = torch.zeros_like(s).scatter(1, frozen.argmax(1, keepdim=True), 1.0)
    else:
        q = torch.softmax(torch.where(keep, beta * s, torch.full_like(s, -math.inf)), dim=1)
    none = ~keep.any(1, keepdim=True)  # (m, 1): a uniform creator
    q = torch.where(none, torch.full_like(s, 1.0 / n), torch.nan_to_num(q))
    p = (1 - eps) * q + eps / n
    objective = (p if rule == "exposure" else p * s).sum(0) * n / m  # (n,) each creator's own
    rows = [torch.autograd.grad(objective[i], v, retain_graph=True)[0][i] for i in range(n)]
    return torch.stack(rows)  # (n, d)


def test_the_gradient_is_autograds_for_every_softmax_family_policy():
    gen = torch.Generator().manual_seed(0)
    R = len(SETTINGS)
    state = State(random_sphere(1, 40, 5, gen, torch.float64), random_sphere(1, 9, 5, gen, torch.float64))
    users, creators = state.users.expand(R, -1, -1), state.creators.expand(R, -1, -1)
    policy = _batch_policy().bind(R, 9, torch.device("cpu"), torch.float64)
    engagement = torch.tensor([rule == "engagement" for _, rule in SETTINGS]).view(-1, 1, 1)
    for chunk in (40, 7):  # the sum over chunks of users is the same
        grad = creator_gradient(users, creators, policy, engagement, chunk)
        for r, (setting, rule) in enumerate(SETTINGS):
            expected = _reference(state.users[0], state.creators[0], setting, rule)
            assert torch.allclose(grad[r], expected, atol=1e-12), (setting, rule)
    assert grad[3].abs().max() > 0.1  # (not a vacuous comparison)


def _run(rules, policy=None, steps=25, **dyn) -> Simulation:
    gen = torch.Generator().manual_seed(1)
    state = State(random_sphere(1, 30, 4, gen, torch.float64), random_sphere(1, 8, 4, gen, torch.float64))
    policy = policy or Policy(beta=2.0)
    sim = Simulation(state, policy, Dynamics(creator_rule=rules, **dyn), seeds=list(range(len(rules))))
    sim.run(steps)
    return sim


def test_zero_step_keeps_creators_put_and_a_cost_scales_the_step():
    start = _run(["exposure", "engagement"], steps=0).creators
    frozen = _run(["exposure", "engagement"], eta_c=0.0)
    assert torch.equal(frozen.creators, start)  # users moved, creators did not
    assert not torch.equal(frozen.users, _run(["exposure", "engagement"], steps=0).users)
    costly = _run(["exposure", "engagement"], eta_c=0.2, creator_cost=1.0)
    plain = _run(["exposure", "engagement"], eta_c=0.1)
    assert torch.equal(costly.creators, plain.creators)  # cost c: the step times 1 / (1 + c)
    assert not torch.equal(plain.creators, start)


def test_vectors_stay_unit_and_replicas_ignore_their_companions():
    rules = ["audience", "exposure", "engagement"]
    together = _run(rules, policy=Policy(beta=[2.0, 2.0, 1.0], k=[None, 3, 3]), steps=200)
    for norms in (together.users.norm(dim=-1), together.creators.norm(dim=-1)):
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-12)
    for r, (rule, beta, k) in enumerate(zip(rules, [2.0, 2.0, 1.0], [None, 3, 3], strict=True)):
        gen = torch.Generator().manual_seed(1)
        state = State(random_sphere(1, 30, 4, gen, torch.float64), random_sphere(1, 8, 4, gen, torch.float64))
        alone = Simulation(state, Policy(beta=beta, k=k), Dynamics(creator_rule=rule), seeds=[r])
        alone.run(200)
        assert torch.allclose(alone.creators[0], together.creators[r], atol=1e-12), rule


def test_exposure_climbing_raises_a_creators_exposure():
    """One small step up the gradient raises the creator's expected exposure (first order)."""
    gen = torch.Generator().manual_seed(2)
    state = State(random_sphere(1, 60, 4, gen, torch.float64), random_sphere(1, 6, 4, gen, torch.float64))
    policy = Policy(beta=3.0)

    def exposure(creators: torch.Tensor) -> torch.Tensor:  # (n,) expected audience per creator
        return torch.softmax(3.0 * state.users[0] @ creators[0].T, dim=1).sum(0)

    sim = Simulation(state, policy, Dynamics(creator_rule="exposure", eta_c=0.01, eta_u=0.0), seeds=[0])
    before = exposure(sim.creators)
    sim.step()
    after = exposure(sim.creators)
    # every creator climbs its own exposure; they compete, so the total is fixed (m) and not all can gain:
    # check each creator's gain against the others held still
    for i in range(6):
        moved = state.creators.clone()
        moved[0, i] = sim.creators[0, i]
        assert exposure(moved)[i] > before[i]
    assert torch.isclose(after.sum(), before.sum())


def test_rules_without_a_gradient_here_are_refused_with_the_replica():
    state = State(torch.eye(3, dtype=torch.float64)[None], torch.eye(3, dtype=torch.float64)[None])
    with pytest.raises(
        ValueError, match="creator_rule='greed': expected one of audience, exposure, engagement"
    ):
        Dynamics(creator_rule="greed")
    with pytest.raises(
        ValueError,
        match=r"creator_rule=exposure with policy.rho=1 \(replica 1\): the creators' gradient is defined",
    ):
        Simulation(state, Policy(rho=[0.0, 1.0]), Dynamics(creator_rule="exposure"), seeds=[0, 1])
    sim = Simulation(state, Policy(), Dynamics(creator_rule="engagement"), seeds=[0])
    with pytest.raises(ValueError, match="needs the oracle recommender"):
        sim.step(state.users, state.creators)


def test_all_uniform_traffic_gives_no_gradient_and_no_nan():
    """eps = 1: every creator is shown uniformly whatever its vector, so nothing pulls it (float32 too)."""
    gen = torch.Generator().manual_seed(3)
    state = State(random_sphere(1, 30, 4, gen), random_sphere(1, 8, 4, gen))
    sim = Simulation(state, Policy(beta=1.0, eps=1.0), Dynamics(creator_rule="exposure"), seeds=[0])
    sim.run(5)
    assert torch.allclose(sim.creators, state.creators, atol=1e-6)


def test_the_theorem_is_judged_on_the_step_the_creators_take():
    from rectest.pipeline.sweep import theorem_conditions

    base = {"k": None, "tau": None, "beta": 1.0, "mmr_lambda": None, "eps": 0.0, "eta_u": 0.04, "eta_c": 0.1}
    assert theorem_conditions({**base, "creator_cost": 0.0}, 50)["theorem_applies"]
    assert not theorem_conditions({**base, "creator_cost": 3.0}, 50)["theorem_applies"]  # eta_c / 4 < 2 eta_u
    assert not theorem_conditions({**base, "creator_rule": "exposure"}, 50)["theorem_applies"]


def test_a_resumed_run_of_gradient_climbers_is_bit_identical():
    rules = ["exposure", "engagement"]
    whole = _run(rules, policy=Policy(beta=2.0, k=[None, 3]), steps=30)
    first = _run(rules, policy=Policy(beta=2.0, k=[None, 3]), steps=12)
    resumed = _run(rules, policy=Policy(beta=2.0, k=[None, 3]), steps=0)
    resumed.load_state_dict(first.state_dict())
    resumed.run(18)
    assert torch.equal(resumed.creators, whole.creators) and torch.equal(resumed.users, whole.users)
