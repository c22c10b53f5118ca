"""Updates (spec section 2) against the per-user loop, impact functions, fixed dimensions, validation."""

import math

import pytest
import torch
from sim_reference import update

from rectest.sim import Dynamics, random_sphere


def bound(dyn, R=1, d=5, dtype=torch.float64):
    return dyn.bind(R, d, torch.device("cpu"), dtype)


@pytest.mark.parametrize(
    "f, g",
    [("sign", "sign"), ("identity", "identity"), ("tanh", "sign"), (lambda x: x**3, lambda x: 2 * x)],
)
def test_update_equals_the_per_user_loop(gen, f, g):
    users = random_sphere(1, 30, 5, gen, dtype=torch.float64)
    creators = random_sphere(1, 8, 5, gen, dtype=torch.float64)
    chosen = torch.randint(0, 6, (1, 30), generator=gen)  # creators 6 and 7 get nobody
    dyn = Dynamics(eta_u=0.3, eta_c=0.2, f=f, g=g, tanh_slope=2.0)
    new_u, new_v = bound(dyn).update(users, creators, chosen)
    impact = {"sign": torch.sign, "identity": lambda x: x, "tanh": lambda x: torch.tanh(2.0 * x)}
    ref_u, ref_v = update(
        users[0],
        creators[0],
        chosen[0],
        0.3,
        0.2,
        impact.get(f, f) if isinstance(f, str) else f,
        impact.get(g, g) if isinstance(g, str) else g,
    )
    assert torch.allclose(new_u[0], ref_u, atol=1e-12)
    assert torch.allclose(new_v[0], ref_v, atol=1e-12)
    assert torch.equal(new_v[0, 6:], creators[0, 6:])  # empty audiences: bit-for-bit unchanged


def test_sign_update_moves_toward_liked_and_away_from_disliked(gen):
    users = random_sphere(1, 200, 4, gen, dtype=torch.float64)
    creators = random_sphere(1, 3, 4, gen, dtype=torch.float64)
    chosen = torch.randint(0, 3, (1, 200), generator=gen)
    new_u, _ = bound(Dynamics(eta_u=0.2, eta_c=0.1), d=4).update(users, creators, chosen)
    shown = creators[0, chosen[0]]
    before = (users[0] * shown).sum(-1)
    after = (new_u[0] * shown).sum(-1)
    assert (after.abs() > before.abs()).all()  # |cos| grows: toward if liked, away if disliked
    assert (torch.sign(after) == torch.sign(before)).all()


def test_fixed_dimensions_stay_frozen_on_the_sphere(gen):
    users = random_sphere(2, 40, 6, gen, dtype=torch.float64)
    creators = random_sphere(2, 5, 6, gen, dtype=torch.float64)
    chosen = torch.randint(0, 5, (2, 40), generator=gen)
    dyn = bound(Dynamics(eta_u=0.5, fixed_dims=[0, 2]), R=2, d=6)
    new_u, _ = dyn.update(users, creators, chosen)
    assert torch.equal(new_u[1, :, :2], users[1, :, :2])
    assert not torch.allclose(new_u[0, :, :2], users[0, :, :2])
    assert torch.allclose(new_u.norm(dim=-1), torch.ones(2, 40, dtype=torch.float64), atol=1e-12)
    free = new_u[1, :, 2:]  # the free part moved in the direction of the free update, rescaled
    step = (
        users[1, :, 2:]
        + 0.5
        * torch.sign((users[1] * creators[1, chosen[1]]).sum(-1, keepdim=True))
        * creators[1, chosen[1], 2:]
    )
    assert torch.allclose(
        torch.nn.functional.normalize(free, dim=-1), torch.nn.functional.normalize(step, dim=-1)
    )


def test_user_with_frozen_part_of_norm_one_is_left_unchanged():
    users = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=torch.float64)
    creators = torch.tensor([[[0.0, 1.0, 0.0]]], dtype=torch.float64)
    new_u, _ = bound(Dynamics(eta_u=0.5, f="identity", fixed_dims=1), d=3).update(
        users, creators, torch.zeros(1, 1, dtype=torch.long)
    )
    assert torch.equal(new_u, users)


def test_zero_rates_are_static(gen):
    users = random_sphere(1, 10, 3, gen)
    creators = random_sphere(1, 4, 3, gen)
    chosen = torch.randint(0, 4, (1, 10), generator=gen)
    new_u, new_v = bound(Dynamics(eta_u=0.0, eta_c=0.0), d=3, dtype=torch.float32).update(
        users, creators, chosen
    )
    assert torch.allclose(new_u, users, atol=1e-7) and torch.allclose(new_v, creators, atol=1e-7)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(eta_u=-0.1), "eta_u=-0.1"),
        (dict(eta_c=1.5), "eta_c=1.5"),
        (dict(eta_u=math.nan), "eta_u=nan"),
        (dict(fixed_dims=-1), "fixed_dims=-1"),
        (dict(fixed_dims=1.5), "fixed_dims=1.5"),
        (dict(f="cube"), "'cube'"),
        (dict(tanh_slope=0.0), "tanh_slope=0.0"),
    ],
)
def test_bad_values_are_refused_by_name(params, match):
    with pytest.raises(ValueError, match=match):
        Dynamics(**params)


def test_fixed_dims_must_leave_a_free_dimension():
    with pytest.raises(ValueError, match="fixed_dims=5"):
        Dynamics(fixed_dims=5).bind(1, 5, torch.device("cpu"), torch.float32)
