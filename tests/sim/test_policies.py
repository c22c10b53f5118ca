"""Policies (spec section 3) against a per-user reference loop, plus their limits and validation."""

import math

import pytest
import torch
from sim_reference import mmr_list, user_probabilities

from rectest.sim import Policy, random_sphere
from rectest.sim import policies as policies_module


def engine_probabilities(policy, users, creators):
    R, n = users.shape[0], creators.shape[1]
    bound = policy.bind(R, n, users.device, users.dtype)
    return bound.probabilities(users @ creators.transpose(1, 2), creators)


def reference_probabilities(users, creators, **params):
    s = users[0] @ creators[0].T
    return torch.stack([user_probabilities(s[j], creators[0], **params) for j in range(users.shape[1])])


@pytest.mark.parametrize(
    "params",
    [
        dict(beta=1.0),
        dict(beta=0.0),
        dict(beta=3.0, k=4),
        dict(beta=1.0, k=1),
        dict(beta=2.0, tau=0.3),
        dict(beta=0.0, tau=0.6),  # many users fall back to uniform
        dict(beta=1.0, k=5, tau=0.2, eps=0.3),
        dict(beta=math.inf),
        dict(beta=math.inf, tau=0.5, eps=0.1),
        dict(beta=60.0, k=3),  # the shifted (row-max) path
        dict(beta=1.0, eps=1.0),
    ],
)
def test_probabilities_equal_the_per_user_loop(gen, params):
    users = random_sphere(1, 30, 5, gen, dtype=torch.float64)
    creators = random_sphere(1, 12, 5, gen, dtype=torch.float64)
    p = engine_probabilities(Policy(**params), users, creators)[0]
    ref = reference_probabilities(users, creators, **params)
    assert torch.allclose(p, ref, atol=1e-12), (p - ref).abs().max()
    assert torch.allclose(p.sum(-1), torch.ones(30, dtype=torch.float64))


def test_threshold_fallback_is_uniform_over_all_creators(gen):
    users = random_sphere(1, 50, 6, gen, dtype=torch.float64)
    creators = random_sphere(1, 9, 6, gen, dtype=torch.float64)
    p = engine_probabilities(Policy(beta=5.0, tau=0.9), users, creators)[0]
    none = (users[0] @ creators[0].T).amax(-1) < 0.9
    assert none.sum() > 0
    assert torch.allclose(p[none], torch.full_like(p[none], 1 / 9))


def test_tau_minus_one_admits_antipodal_creators_despite_rounding(gen):
    c = random_sphere(1, 1, 7, gen)  # float32: <c, -c> may round below -1
    users, creators = c.expand(1, 5, 7), torch.cat([-c, c, -c], 1)
    p = engine_probabilities(Policy(beta=1.0, tau=-1.0), users, creators)
    assert torch.allclose(p, engine_probabilities(Policy(beta=1.0), users, creators))
    assert (p > 0).all()


def test_per_replica_parameters_equal_separate_runs(gen):
    users = random_sphere(4, 20, 5, gen, dtype=torch.float64)
    creators = random_sphere(4, 10, 5, gen, dtype=torch.float64)
    betas, ks, taus = [0.0, 1.0, math.inf, 3.0], [1, 10, 3, 5], [-1.0, 0.2, 0.0, 0.4]
    batched = engine_probabilities(Policy(beta=betas, k=ks, tau=taus, eps=[0, 0.1, 0, 0.2]), users, creators)
    for r in range(4):
        single = engine_probabilities(
            Policy(beta=betas[r], k=ks[r], tau=taus[r], eps=[0, 0.1, 0, 0.2][r]),
            users[r : r + 1],
            creators[r : r + 1],
        )
        assert torch.allclose(batched[r], single[0], atol=1e-12)


def test_large_beta_is_finite_and_tends_to_argmax(gen):
    users = random_sphere(1, 40, 8, gen)
    creators = random_sphere(1, 25, 8, gen)
    for params in (dict(beta=1e4), dict(beta=1e4, k=3), dict(beta=1e4, tau=0.1), dict(beta=1e4, rho=0.5)):
        p = engine_probabilities(Policy(**params), users, creators)
        assert torch.isfinite(p).all(), params
    p = engine_probabilities(Policy(beta=1e4), users, creators)
    hard = engine_probabilities(Policy(beta=math.inf), users, creators)
    assert torch.equal(p.argmax(-1), hard.argmax(-1))
    assert (p.amax(-1) > 0.99).float().mean() > 0.9  # near-ties aside, the mass is on the argmax


def test_k_equal_n_is_plain_softmax(gen):
    users = random_sphere(2, 10, 4, gen, dtype=torch.float64)
    creators = random_sphere(2, 6, 4, gen, dtype=torch.float64)
    a = engine_probabilities(Policy(beta=2.0, k=6), users, creators)
    b = engine_probabilities(Policy(beta=2.0), users, creators)
    assert torch.allclose(a, b, atol=1e-12)


def test_diversity_aware_policy_is_the_fixed_point_and_raises_rd(gen):
    users = random_sphere(1, 25, 5, gen, dtype=torch.float64)
    creators = random_sphere(1, 15, 5, gen, dtype=torch.float64)
    s = users @ creators.transpose(1, 2)
    beta, rho = 2.0, 0.4
    p = engine_probabilities(Policy(beta=beta, rho=rho, rho_tol=1e-12, rho_iters=2000), users, creators)
    vbar = p @ creators
    target = torch.softmax(beta * (s + rho * (1 - 2 * vbar @ creators.transpose(1, 2))), -1)
    assert torch.allclose(p, target, atol=1e-9)

    # the fixed point maximises the concave objective: random perturbations inside the simplex do worse
    def objective(q):
        vb = q @ creators
        return (
            (q * s).sum(-1) + rho * (1 - (vb * vb).sum(-1)) - (q * q.clamp_min(1e-300).log()).sum(-1) / beta
        )

    for _ in range(20):
        q = torch.softmax(torch.log(p) + 0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype), -1)
        assert (objective(q) <= objective(p) + 1e-12).all()
    plain = engine_probabilities(Policy(beta=beta), users, creators)
    rd = lambda q: (1 - ((q @ creators) ** 2).sum(-1)).mean()  # noqa: E731
    assert rd(p) > rd(plain)
    assert torch.allclose(engine_probabilities(Policy(beta=beta, rho=0.0), users, creators), plain)


def test_diversity_aware_iteration_converges_where_a_half_step_oscillates(gen):
    """Creators in two tight groups, rho = 2, beta = 1 (2 beta rho = 4): a fixed damping of 1/2 cycles
    (a change of ~1e-2 after 500 iterations); the step 1 / (1 + 2 beta rho) reaches the fixed point within the
    default 100 iterations, row by row, whatever the other users of the chunk."""
    users = random_sphere(1, 30, 4, gen, dtype=torch.float64)
    poles = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]], dtype=torch.float64)
    creators = poles.repeat(6, 1) + 0.05 * torch.randn(12, 4, generator=gen, dtype=torch.float64)
    creators = (creators / creators.norm(dim=-1, keepdim=True))[None]
    s = users @ creators.transpose(1, 2)
    beta, rho = 1.0, 2.0

    def fixed_point_map(q):
        vb = q @ creators
        return torch.softmax(beta * (s + rho * (1 - 2 * vb @ creators.transpose(1, 2))), -1)

    half = torch.softmax(beta * s, -1)
    for _ in range(500):
        half = 0.5 * half + 0.5 * fixed_point_map(half)
    assert (fixed_point_map(half) - half).abs().max() > 1e-3  # the old iteration never settles here
    p = engine_probabilities(Policy(beta=beta, rho=rho), users, creators)
    assert (fixed_point_map(p) - p).abs().max() < 1e-5
    few = engine_probabilities(Policy(beta=beta, rho=rho), users[:, :7], creators)
    assert torch.allclose(few, p[:, :7], rtol=0, atol=1e-12)  # each user iterates on its own


def test_diversity_aware_tiles_fallback_rows_and_plain_replicas(gen, monkeypatch):
    """Rows iterate tile by tile: tiles of one row give one tile's results. A row with nothing above tau keeps the
    uniform fallback, and a rho = 0 replica batched with a rho > 0 one keeps its plain softmax."""
    users = random_sphere(2, 40, 4, gen, dtype=torch.float64)
    creators = random_sphere(2, 12, 4, gen, dtype=torch.float64)
    policy = Policy(beta=2.0, rho=[0.0, 1.0], tau=0.8)
    whole = engine_probabilities(policy, users, creators)
    monkeypatch.setattr(policies_module, "RHO_TILE_ELEMENTS", 1)  # one row a tile
    assert torch.allclose(engine_probabilities(policy, users, creators), whole, rtol=0, atol=1e-12)
    none = ((users @ creators.transpose(1, 2)) < 0.8).all(-1)  # (2, 40) rows with nothing eligible
    assert none[1].any() and (~none[1]).any()
    assert torch.allclose(whole[1][none[1]], torch.full_like(whole[1][none[1]], 1 / 12), rtol=0, atol=1e-15)
    plain = engine_probabilities(Policy(beta=2.0, tau=0.8), users[:1], creators[:1])
    assert torch.allclose(whole[0], plain[0], rtol=0, atol=1e-15)
    assert not torch.allclose(
        whole[1][~none[1]], engine_probabilities(Policy(beta=2.0, tau=0.8), users, creators)[1][~none[1]]
    )


def test_mmr_list_equals_the_greedy_loop(gen):
    users = random_sphere(1, 15, 4, gen, dtype=torch.float64)
    creators = random_sphere(1, 20, 4, gen, dtype=torch.float64)
    k, lam, beta = 4, 0.6, 2.0
    p = engine_probabilities(Policy(beta=beta, k=k, mmr_lambda=lam), users, creators)[0]
    s = users[0] @ creators[0].T
    for j in range(15):
        picked = mmr_list(s[j], creators[0], k, lam)
        ref = torch.zeros(20, dtype=torch.float64)
        ref[picked] = torch.softmax(beta * s[j, picked], 0)
        assert torch.allclose(p[j], ref, atol=1e-12)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(beta=-1.0), "^policy.beta=-1.0"),
        (dict(beta=math.nan), "^policy.beta=nan"),
        (dict(k=0), "^policy.k=0"),
        (dict(k=2.5), "^policy.k=2.5"),
        (dict(tau=1.5), "^policy.tau=1.5"),
        (dict(eps=-0.1), "^policy.eps=-0.1"),
        (dict(rho=-1.0), "^policy.rho=-1.0"),
        (dict(beta=math.inf, rho=0.5), "^policy.rho=0.5 with policy.beta=inf"),
        (dict(mmr_lambda=0.5), "needs k"),
        (dict(mmr_lambda=[0.5, None], k=[None, 3]), "policy.mmr_lambda=0.5 with policy.k=None"),
        (dict(mmr_lambda=1.5, k=2), "^policy.mmr_lambda=1.5"),
        (dict(beta="x"), "^policy.beta='x'"),
    ],
)
def test_bad_values_are_refused_by_their_config_key(params, match):
    with pytest.raises(ValueError, match=match):
        Policy(**params)


def test_bind_checks_k_against_n_and_list_lengths():
    with pytest.raises(ValueError, match="k=7: expected k <= n = 6"):
        Policy(k=7).bind(1, 6, torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="beta has 2 values but the simulation has 3 replicas"):
        Policy(beta=[1.0, 2.0]).bind(3, 6, torch.device("cpu"), torch.float32)
