"""Measures against their definitions, the closed forms of spec section 6 and brute-force loops."""

import math

import pytest
import torch
from sim_reference import measures as reference_measures
from sim_reference import user_probabilities

from rectest.sim import (
    Dynamics,
    Policy,
    Simulation,
    State,
    count_clusters,
    creator_pair_measures,
    pairwise_diversity_and_polarization,
    polarization_radius,
    random_sphere,
    recommendation_diversity,
    recommendation_relevance,
)


def sphere_cosine_moments(d: int) -> tuple[float, float]:
    """E||x - y|| and E|<x, y>| for independent uniform x, y on S^{d-1} (numerical quadrature of the
    density of t = <x, y>, proportional to (1 - t^2)^((d - 3) / 2))."""
    t = torch.linspace(-1, 1, 400001, dtype=torch.float64)
    dens = (1 - t * t).clamp_min(0) ** ((d - 3) / 2)
    dens = dens / torch.trapezoid(dens, t)
    return float(torch.trapezoid(dens * (2 - 2 * t).sqrt(), t)), float(torch.trapezoid(dens * t.abs(), t))


@pytest.mark.parametrize("d", [10, 16])
def test_uniform_state_matches_the_closed_forms_at_t0(d):
    n, R = 50, 400
    v = random_sphere(R, n, d, torch.Generator().manual_seed(d), dtype=torch.float64)
    cd, tp = pairwise_diversity_and_polarization(v)
    dist, abs_cos = sphere_cosine_moments(d)
    closed_tp = 1 / n + (1 - 1 / n) * math.gamma(d / 2) / (math.sqrt(math.pi) * math.gamma((d + 1) / 2))
    assert abs_cos == pytest.approx(
        math.gamma(d / 2) / (math.sqrt(math.pi) * math.gamma((d + 1) / 2)), rel=1e-6
    )
    for value, want in ((cd, dist), (tp, closed_tp)):
        se = value.std() / math.sqrt(R)
        assert abs(value.mean().item() - want) < 4 * se.item() + 1e-4
    if d == 10:  # the spec's quoted numbers
        assert dist == pytest.approx(1.395, abs=2e-3)
        assert closed_tp == pytest.approx(0.2735, abs=1e-4)
    else:  # the spec's d = 16 value is the large-n limit (n = 2000 movies: 1/n is negligible)
        assert abs_cos == pytest.approx(0.203, abs=1e-3)


def test_pairwise_measures_equal_the_double_loop_in_any_chunking(gen):
    v = random_sphere(2, 13, 4, gen, dtype=torch.float64)
    for chunk in (1, 3, 5, 1000):
        cd, tp = pairwise_diversity_and_polarization(v, chunk)
        for r in range(2):
            ref = reference_measures(v[r, :1], v[r], torch.full((1, 13), 1 / 13, dtype=torch.float64))
            assert cd[r].item() == pytest.approx(ref["CD"], abs=1e-12)
            assert tp[r].item() == pytest.approx(ref["TP"], abs=1e-12)


def test_rd_and_rr_equal_their_definitions(gen):
    u = random_sphere(1, 7, 5, gen, dtype=torch.float64)
    v = random_sphere(1, 9, 5, gen, dtype=torch.float64)
    p = torch.softmax(torch.randn(1, 7, 9, generator=gen, dtype=torch.float64), -1)
    ref = reference_measures(u[0], v[0], p[0])
    assert recommendation_diversity(p, v).item() == pytest.approx(ref["RD"], abs=1e-12)
    assert recommendation_relevance(p, u @ v.transpose(1, 2)).item() == pytest.approx(ref["RR"], abs=1e-12)


def first_record(state, policy, r_polarized=0.05):
    sim = Simulation(state, policy, Dynamics(), seeds=[0], r_polarized=r_polarized)
    sim.step()
    return {name: values[0, 0].item() for name, values in sim.history.items() if name != "step"}


def test_consensus_has_cd0_tp1_rr1_rd0(gen):
    c = random_sphere(1, 1, 6, gen)
    rec = first_record(State(c.expand(1, 20, 6), c.expand(1, 8, 6)), Policy(beta=2.0))
    assert rec["CD"] == pytest.approx(0, abs=1e-3)  # float32 Gram rounding: sqrt(2 - 2 (1 - 1e-7))
    assert rec["TP"] == pytest.approx(1, abs=1e-6)
    assert rec["RR"] == pytest.approx(1, abs=1e-6)
    assert rec["RD"] == pytest.approx(0, abs=1e-6)
    assert rec["UD"] == pytest.approx(0, abs=1e-3)
    assert rec["clusters"] == 1 and rec["polarized"] == 1


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 3.0])
def test_balanced_bipolarization_closed_forms(gen, beta):
    c = random_sphere(1, 1, 5, gen, dtype=torch.float64)
    n, m = 10, 12
    signs_v = torch.tensor([1.0, -1.0] * (n // 2), dtype=torch.float64).view(1, n, 1)
    signs_u = torch.tensor([1.0, -1.0] * (m // 2), dtype=torch.float64).view(1, m, 1)
    rec = first_record(State(signs_u * c, signs_v * c), Policy(beta=beta))
    assert rec["TP"] == pytest.approx(1, abs=1e-12)
    assert rec["CD"] == pytest.approx(n / (n - 1), abs=1e-12)
    assert rec["RR"] == pytest.approx(math.tanh(beta), abs=1e-12)
    assert rec["RD"] == pytest.approx(1 / math.cosh(beta) ** 2, abs=1e-12)
    assert rec["clusters"] == 2 and rec["polarized"] == 1


def test_rd_rr_in_the_engine_equal_the_reference_loop(gen):
    u = random_sphere(1, 9, 4, gen, dtype=torch.float64)
    v = random_sphere(1, 7, 4, gen, dtype=torch.float64)
    pol = dict(beta=2.0, k=3, tau=0.1, eps=0.2)
    rec = first_record(State(u, v), Policy(**pol))
    s = u[0] @ v[0].T
    p = torch.stack([user_probabilities(s[j], v[0], **pol) for j in range(9)])
    ref = reference_measures(u[0], v[0], p)
    for name in ("CD", "RD", "RR", "TP"):
        assert rec[name] == pytest.approx(ref[name], abs=1e-10), name


def test_clusters_are_connected_components(gen):
    d = 6
    centres = torch.eye(d, dtype=torch.float64)[:3]  # three far-apart directions
    jitter = 1e-3 * torch.randn(3, 5, d, generator=gen, dtype=torch.float64)
    v = torch.nn.functional.normalize((centres.unsqueeze(1) + jitter).reshape(1, 15, d), dim=-1)
    perm = torch.randperm(15, generator=gen)
    assert count_clusters(v[:, perm]).item() == 3
    assert count_clusters(v[:, perm], chunk=2).item() == 3
    # a chain whose neighbours are linked (cos >= 1 - 1e-3) but whose ends are not is one component
    angles = torch.arange(10, dtype=torch.float64) * 0.04  # neighbour cosine cos(0.04) = 0.9992
    chain = torch.stack([angles.cos(), angles.sin()], -1).view(1, 10, 2)
    assert count_clusters(chain[:, torch.randperm(10, generator=gen)]).item() == 1
    assert count_clusters(random_sphere(2, 30, 8, gen)).tolist() == [30, 30]


def test_polarization_radius(gen):
    c = random_sphere(1, 1, 4, gen, dtype=torch.float64)
    side = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64).view(1, 3, 1)
    assert polarization_radius(side * c, -side * c).item() == pytest.approx(0, abs=1e-6)
    tilt = torch.nn.functional.normalize(c + 0.02 * random_sphere(1, 3, 4, gen, dtype=torch.float64), dim=-1)
    radius = polarization_radius(tilt, -c).item()
    assert 0 < radius < 0.05
    assert polarization_radius(random_sphere(1, 20, 4, gen), random_sphere(1, 20, 4, gen)).item() > 0.5


def test_creator_pair_measures_equal_the_separate_measures_sparse_and_dense():
    gen = torch.Generator().manual_seed(11)
    spread = random_sphere(3, 200, 6, gen)
    centres = random_sphere(3, 4, 6, gen)
    pick = torch.randint(4, (3, 200), generator=gen)
    collapsed = torch.gather(centres, 1, pick.unsqueeze(-1).expand(-1, -1, 6))
    collapsed = collapsed + 1e-4 * torch.randn(collapsed.shape, generator=gen)
    collapsed = collapsed / collapsed.norm(dim=-1, keepdim=True)
    chain = torch.stack([torch.cos(torch.arange(60) * 0.03), torch.sin(torch.arange(60) * 0.03)], 1)
    chain = torch.cat([chain, torch.zeros(60, 4)], 1).unsqueeze(0).expand(3, -1, -1)  # one long chain
    mixed = torch.cat([spread[:, :140], chain], 1)  # few edges: the sparse path, components over chains
    for v in (spread, collapsed, mixed):
        for chunk in (7, 64, 1000):
            cd, tp, clusters = creator_pair_measures(v, chunk)
            ref_cd, ref_tp = pairwise_diversity_and_polarization(v, chunk)
            assert torch.allclose(cd, ref_cd) and torch.allclose(tp, ref_tp)
            assert torch.equal(clusters, count_clusters(v, chunk=chunk))
    assert creator_pair_measures(mixed)[2].tolist() == [141, 141, 141]


@pytest.mark.parametrize("k, d", [(1, 3), (7, 16), (100, 16), (33, 64)])
def test_compiled_recommendation_terms_equal_the_gathered_ones(gen, k, d, monkeypatch):
    """The compiled RD and RR terms of a float32 top-k draw (toplists.c, no gather of the entry vectors) equal
    the torch path's to float rounding, weights past a replica's k at zero included."""
    from rectest.sim import toplists
    from rectest.sim.measures import sparse_recommendation_sums

    if not toplists.sums_available(torch.zeros(1)):
        pytest.skip("no C compiler here (or RECTEST_NATIVE=0): the torch path is the only one")
    R, c, n = 3, 50, 300
    users, creators = random_sphere(R, c, d, gen), random_sphere(R, n, d, gen)
    idx = torch.stack(
        [torch.stack([torch.randperm(n, generator=gen)[:k] for _ in range(c)]) for _ in range(R)]
    )
    weights = torch.rand(R, c, k, generator=gen) * 3
    weights[1, :, k // 2 + 1 :] = 0  # a replica whose k is smaller than the lists
    total = weights.sum(-1, keepdim=True)
    compiled = sparse_recommendation_sums(weights, idx, total, users, creators)
    monkeypatch.setattr(toplists, "sums_available", lambda *tensors: False)
    gathered = sparse_recommendation_sums(weights, idx, total, users, creators)
    for a, b in zip(compiled, gathered, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    exact = sparse_recommendation_sums(
        weights.double(), idx, total.double(), users.double(), creators.double()
    )
    for a, b in zip(compiled, exact, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-5)


def test_sparse_recommendation_sums_equal_the_dense_rows_and_the_definitions(gen):
    """RD and RR from a top-k draw's lists (the engine's logged top-k steps) equal the sums over the dense
    rows of the same policy, a user with tied k-th scores (its full row) included, and both equal the
    definitions: RR is sum_i p_ij s_ij with the true scores (here not the policy's), although the engine
    computes it as <u_j, vbar_j>."""
    from rectest.sim.measures import recommendation_sums, sparse_recommendation_sums

    R, c, n, d = 2, 9, 40, 5
    users = random_sphere(R, c, d, gen, dtype=torch.float64)
    creators = random_sphere(R, n, d, gen, dtype=torch.float64)
    seen = torch.rand(R, c, n, generator=gen, dtype=torch.float64) * 2 - 1  # the policy's scores
    seen[0, 4, :5] = 0.999  # five creators tie at user 4's top: all eligible under k = 3
    policy = Policy(beta=[1.5, 0.5], k=[3, 7]).bind(R, n, torch.device("cpu"), torch.float64)
    draw = policy.draw_top_k(seen, torch.rand(R, c, generator=gen, dtype=torch.float64))
    assert draw.tied is not None and draw.tied[1].tolist() == [4]
    dense = None if draw.tied is None else (*draw.tied, draw.tied_weights)
    got = sparse_recommendation_sums(draw.weights, draw.creators, draw.total, users, creators, dense)
    w = policy.weights(seen, creators)
    want = recommendation_sums(w, users, creators, w.sum(-1, keepdim=True))
    p = w / w.sum(-1, keepdim=True)
    vbar = p @ creators  # (R, c, d)
    rd = (p.unsqueeze(-1) * (creators.unsqueeze(1) - vbar.unsqueeze(2)).pow(2)).sum((-1, -2)).sum(-1)
    rr = (p * (users @ creators.transpose(1, 2))).sum((-1, -2))  # sum_j sum_i p_ij s_ij
    for a, b, definition in zip(got, want, (rd, rr), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(b, definition, rtol=1e-12, atol=1e-12)
