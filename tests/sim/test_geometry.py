"""Geometry instruments: closed forms on i.i.d. uniform vectors, hand-built states, transforms, poles."""

from __future__ import annotations

import math

import pytest
import torch

from rectest.sim import Dynamics, Policy, Simulation, State, random_sphere
from rectest.sim.geometry import (
    bipolar_prediction,
    effective_rank,
    iid_abs_cosine,
    iid_mean_distance,
    iid_reference,
    poles,
    start_geometry,
    top_overlap,
    transform_start,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_iid_closed_forms_match_low_dimensions_and_the_spec():
    assert iid_mean_distance(2) == pytest.approx(4 / math.pi)  # mean chord of the circle
    assert iid_mean_distance(3) == pytest.approx(4 / 3)  # mean chord of the 2-sphere
    assert iid_abs_cosine(2) == pytest.approx(2 / math.pi)
    assert iid_abs_cosine(3) == pytest.approx(0.5)
    # spec section 6: CD(0) ~ 1.395 for d = 10; TP(0) ~ 0.2735 (n = 50, d = 10) and ~ 0.203 for d = 16
    assert iid_mean_distance(10) == pytest.approx(1.395, abs=1e-3)
    assert iid_reference(100, 50, 10)["TP"] == pytest.approx(0.2735, abs=5e-4)
    assert iid_abs_cosine(16) == pytest.approx(0.2026, abs=5e-4)


def test_start_geometry_of_iid_vectors_matches_the_closed_forms():
    m, n, d = 3000, 2500, 16
    users = random_sphere(1, m, d, _gen(1), torch.float64)[0]
    creators = random_sphere(1, n, d, _gen(2), torch.float64)[0]
    got, ref = start_geometry(users, creators), iid_reference(m, n, d)
    assert got["CD"] == pytest.approx(ref["CD"], abs=3e-3)
    assert got["TP"] == pytest.approx(ref["TP"], abs=3e-3)
    assert got["negative_scores"] == pytest.approx(0.5, abs=5e-3)
    # the mean of N i.i.d. unit vectors has E||mean||^2 = 1/N: within a factor 2 for one draw
    assert 0.5 < got["mean_user_norm"] / ref["mean_user_norm"] < 2
    assert 0.5 < got["mean_creator_norm"] / ref["mean_creator_norm"] < 2
    assert abs(got["mean_cosine"]) < 0.3
    assert got["effective_rank_users"] == pytest.approx(ref["effective_rank_users"], abs=0.3)
    assert got["effective_rank_creators"] == pytest.approx(ref["effective_rank_creators"], abs=0.3)


def test_effective_rank_of_a_line_and_of_a_plane():
    t = torch.linspace(-1, 1, 101, dtype=torch.float64)
    line = torch.stack([t, 2 * t, torch.zeros_like(t)], 1)
    assert effective_rank(line) == pytest.approx(1.0)
    square = torch.cartesian_prod(t, t)  # equal variance in both axes
    assert effective_rank(torch.cat([square, torch.zeros(len(square), 3, dtype=torch.float64)], 1)) == (
        pytest.approx(2.0)
    )


def _poles_state(m_plus: int, m_minus: int, n_plus: int, n_minus: int, d: int = 8, noise: float = 0.0):
    """Users and creators at +e_0 or -e_0 (optionally jittered), in that order."""
    g = _gen(3)
    axis = torch.zeros(d, dtype=torch.float64)
    axis[0] = 1

    def block(count: int, sign: float) -> torch.Tensor:
        x = sign * axis.expand(count, d) + noise * torch.randn(count, d, generator=g, dtype=torch.float64)
        return x / x.norm(dim=1, keepdim=True)

    users = torch.cat([block(m_plus, 1.0), block(m_minus, -1.0)])
    creators = torch.cat([block(n_plus, 1.0), block(n_minus, -1.0)])
    return users, creators


def _measured(users, creators, policy: Policy) -> dict[str, float]:
    sim = Simulation(State(users, creators), policy, Dynamics(eta_u=0.1, eta_c=0.1), seeds=[0])
    sim.step(log=True)
    return {m: float(sim.history[m][0, 0]) for m in ("CD", "TP", "RR", "RD")}


def test_all_users_opposite_all_creators():
    users, creators = _poles_state(30, 0, 0, 20, noise=0.01)
    geo = start_geometry(users, creators)
    assert geo["negative_scores"] == 1.0
    assert geo["mean_cosine"] == pytest.approx(-1.0, abs=1e-2)
    assert _measured(users, creators, Policy(beta=math.inf))["RR"] == pytest.approx(-1.0, abs=1e-2)
    assert _measured(users, creators, Policy(beta=1.0, k=1))["RR"] == pytest.approx(-1.0, abs=1e-2)


def test_poles_find_a_known_split():
    users, creators = _poles_state(12, 28, 15, 35)  # 12 of 40 users and 15 of 50 creators at +e_0
    found = poles(users.unsqueeze(0), creators.unsqueeze(0))
    # the axis is signed so that most users are on +: here -e_0
    assert found["axis"][0, 0] == pytest.approx(-1.0)
    assert float(found["users_plus"][0]) == pytest.approx(28 / 40)
    assert float(found["creators_plus"][0]) == pytest.approx(35 / 50)
    assert float(found["radius"][0]) == pytest.approx(0.0, abs=1e-6)
    jittered = poles(*(x.unsqueeze(0) for x in _poles_state(12, 28, 15, 35, noise=0.2)))
    assert float(jittered["radius"][0]) > 0.05


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 3.0])
def test_bipolar_closed_form_matches_the_engine_on_exact_poles(beta):
    users, creators = _poles_state(10, 30, 14, 36)
    a_c, a_u = 36 / 50, 30 / 40  # fractions on the users' majority side
    predicted = bipolar_prediction(a_c, a_u, 50, beta)
    measured = _measured(users, creators, Policy(beta=beta))
    for m in ("CD", "TP", "RR", "RD"):
        assert predicted[m] == pytest.approx(measured[m], abs=1e-5), m


def test_balanced_bipolar_closed_form_is_the_spec():
    for beta in (0.5, 1.0, 2.0):
        p = bipolar_prediction(0.5, 0.5, 100, beta)
        assert p["RR"] == pytest.approx(math.tanh(beta))
        assert p["RD"] == pytest.approx(1 / math.cosh(beta) ** 2)
        assert p["CD"] == pytest.approx(100 / 99)
    assert bipolar_prediction(0.5, 0.5, 100, math.inf)["RR"] == 1.0


@pytest.mark.parametrize(
    ("k", "tau", "eps"), [(5, None, 0.0), (20, None, 0.0), (None, 0.0, 0.0), (5, None, 0.2)]
)
def test_bipolar_closed_form_for_truncation_and_uniform_traffic(k, tau, eps):
    # jitter breaks the ties at +-1 so top-k keeps exactly k; the closed form then holds to O(noise^2)
    users, creators = _poles_state(10, 30, 14, 36, noise=0.01)
    predicted = bipolar_prediction(36 / 50, 30 / 40, 50, 1.0, k=k, tau=tau, eps=eps)
    measured = _measured(users, creators, Policy(beta=1.0, k=k, tau=tau, eps=eps))
    assert predicted["RR"] == pytest.approx(measured["RR"], abs=2e-3)
    assert predicted["RD"] == pytest.approx(measured["RD"], abs=5e-3)


def test_transforms():
    g = _gen(5)
    scale = torch.tensor([3.0, 1.0, 0.5, 0.2, 0.1, 0.1], dtype=torch.float64)
    users = torch.randn(4000, 6, generator=g, dtype=torch.float64) * scale + 2.0  # anisotropic, off-centre
    creators = torch.randn(3000, 6, generator=g, dtype=torch.float64) * scale - 1.0
    same_u, same_c = transform_start(users, creators, "none")
    assert torch.allclose(same_u, users / users.norm(dim=1, keepdim=True))
    assert torch.allclose(same_c, creators / creators.norm(dim=1, keepdim=True))
    before = start_geometry(same_u, same_c)
    assert before["negative_scores"] > 0.9 and before["effective_rank_users"] < 2
    ref = iid_reference(4000, 3000, 6)
    for kind in ("center", "whiten", "whiten_each"):
        u, c = transform_start(users, creators, kind)
        assert torch.allclose(u.norm(dim=1), torch.ones(4000, dtype=torch.float64))
        geo = start_geometry(u, c)
        assert geo["negative_scores"] < 0.9, kind
    u, c = transform_start(users, creators, "whiten_each")  # Gaussian clouds -> uniform on the sphere
    geo = start_geometry(u, c)
    assert geo["TP"] == pytest.approx(ref["TP"], abs=0.01)
    assert geo["effective_rank_users"] == pytest.approx(ref["effective_rank_users"], abs=0.1)
    assert geo["negative_scores"] == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="transform='bogus'"):
        transform_start(users, creators, "bogus")


def test_top_overlap():
    users = random_sphere(1, 200, 8, _gen(6))[0]
    creators = random_sphere(1, 100, 8, _gen(7))[0]
    assert top_overlap(users, creators, users, creators) == 1.0
    assert top_overlap(users, creators, users, -creators) == 0.0  # the top-10 become the bottom-10


def test_edge_cases_of_the_closed_forms_and_transforms():
    assert bipolar_prediction(0.5, 0.5, 100, 1000.0)["RR"] == 1.0  # no overflow at a huge beta
    assert bipolar_prediction(0.0, 1.0, 10, 1.0)["RR"] == -1.0  # every creator on the other pole
    two = iid_reference(2, 1, 8)
    assert two["effective_rank_users"] == pytest.approx(1.0) and two["CD"] == 0.0  # N = 2: one direction
    users = random_sphere(1, 5, 4, _gen(8))[0]
    with pytest.raises(ValueError, match="at least 2 users and 2 creators"):
        transform_start(users, users[:1], "whiten_each")
    same_u, same_c = transform_start(users, users[:1], "none")
    assert torch.allclose(same_c, users[:1])
