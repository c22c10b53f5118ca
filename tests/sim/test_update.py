"""The compiled step of the dynamics (rectest.sim.update): the spec's update, the torch path's floats but for the
order of the sums over the coordinates, index_add_'s creator sums bit for bit, and the cases it leaves to torch."""

import pytest
import torch
from sim_reference import update as reference_update

from rectest.sim import Dynamics, random_sphere
from rectest.sim import update as native_update
from rectest.sim.shards import creator_sums

pytestmark = pytest.mark.skipif(
    not native_update.available(torch.device("cpu"), torch.float32),
    reason="no C compiler here (or RECTEST_NATIVE=0): the kernel cannot be built, the dynamics use torch",
)

CPU = torch.device("cpu")


def world(gen: torch.Generator, R: int, m: int, n: int, d: int) -> tuple[torch.Tensor, ...]:
    """Float32 unit users and creators, and choices that leave the last two creators of each replica unseen."""
    users = random_sphere(R, m, d, gen)
    creators = random_sphere(R, n, d, gen)
    chosen = torch.randint(0, n - 2, (R, m), generator=gen)
    return users, creators, chosen


@pytest.mark.parametrize("f, g", [("sign", "sign"), ("identity", "identity"), ("sign", "identity")])
@pytest.mark.parametrize("d", [3, 10, 16, 17, 40])
def test_compiled_step_is_the_spec_update(gen, f, g, d):
    """Against the per-user loop in float64 (spec section 2), per-replica rates; unseen creators bit for bit."""
    R, m, n = 3, 60, 9
    users, creators, chosen = world(gen, R, m, n, d)
    eta_u, eta_c = [0.1, 0.3, 0.7], [0.2, 0.05, 0.5]
    dyn = Dynamics(eta_u=eta_u, eta_c=eta_c, f=f, g=g).bind(R, d, CPU, torch.float32)
    assert dyn.native
    new_u, new_v = dyn.update(users, creators, chosen)
    impact = {"sign": torch.sign, "identity": lambda x: x}
    for r in range(R):
        ref_u, ref_v = reference_update(
            users[r].double(), creators[r].double(), chosen[r], eta_u[r], eta_c[r], impact[f], impact[g]
        )
        torch.testing.assert_close(new_u[r].double(), ref_u, rtol=0, atol=2e-6)
        torch.testing.assert_close(new_v[r].double(), ref_v, rtol=0, atol=2e-6)
    assert torch.equal(new_v[:, n - 2 :], creators[:, n - 2 :])  # shown to nobody: unchanged


@pytest.mark.parametrize("d", [10, 16, 33])
def test_compiled_step_rounds_as_the_torch_path(gen, d):
    """The same float32 vectors as torch's operations up to the order of the sums over the coordinates (a few
    units in the last place); the creators' sums over their audiences are index_add_'s, bit for bit."""
    R, m, n = 4, 200, 30
    users, creators, chosen = world(gen, R, m, n, d)
    dyn = Dynamics(eta_u=0.1, eta_c=0.1).bind(R, d, CPU, torch.float32)
    compiled = dyn.update(users, creators, chosen)
    dyn.native = False
    torch_path = dyn.update(users, creators, chosen)
    for a, b in zip(compiled, torch_path, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=4e-7)
    _, s = native_update.move_users(users, creators, chosen, dyn.eta_u, "sign")
    for g, impact in (("sign", torch.sign(s)), ("identity", s)):  # (identity: inexact products, unfused)
        terms = torch.cat([impact.unsqueeze(-1) * users, torch.ones(R, m, 1)], -1)
        assert torch.equal(native_update.creator_sums(users, s, chosen, n, g), creator_sums(terms, chosen, n))


def test_a_replica_moves_alone_whatever_its_companions(gen):
    """Replica r's new vectors do not depend on the other replicas, their number or the threads."""
    R, m, n, d = 6, 50, 12, 10
    users, creators, chosen = world(gen, R, m, n, d)
    rates = [0.1 * (r + 1) for r in range(R)]
    together = (
        Dynamics(eta_u=rates, eta_c=rates).bind(R, d, CPU, torch.float32).update(users, creators, chosen)
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for r in range(R):
            one = Dynamics(eta_u=rates[r], eta_c=rates[r]).bind(1, d, CPU, torch.float32)
            alone = one.update(users[r : r + 1], creators[r : r + 1], chosen[r : r + 1])
            assert torch.equal(alone[0][0], together[0][r]) and torch.equal(alone[1][0], together[1][r])
    finally:
        torch.set_num_threads(threads)


def test_the_torch_path_keeps_what_the_kernel_does_not_compute():
    """tanh, callables, fixed dimensions and float64 run in torch (the kernel computes sign and identity)."""
    bind = lambda dyn, dtype=torch.float32: dyn.bind(2, 6, CPU, dtype)  # noqa: E731
    assert bind(Dynamics()).native
    assert not bind(Dynamics(f="tanh")).native
    assert not bind(Dynamics(g=lambda x: 2 * x)).native
    assert not bind(Dynamics(fixed_dims=2)).native
    assert not bind(Dynamics(), torch.float64).native


def test_anchor_cosines_and_the_polarization_check(gen):
    """The compiled anchor cosines are torch's to rounding, and is_polarized flags the same replicas with them as
    with torch's (states polarized, near the radius and far from it)."""
    from rectest.sim import measures

    R, m, n, d = 6, 80, 20, 8
    users, creators, _ = world(gen, R, m, n, d)
    pole = torch.nn.functional.normalize(torch.randn(d, generator=gen), dim=0)
    for r, spread in enumerate([0.0, 0.01, 0.03, 0.05, 0.2]):  # replicas 0-4 around +-pole, 5 uniform
        sign = torch.where(torch.rand(m + n, 1, generator=gen) < 0.5, -1.0, 1.0)
        near = (
            torch.nn.functional.normalize(pole + spread * torch.randn(m + n, d, generator=gen), dim=-1) * sign
        )
        users[r], creators[r] = near[:m], near[m:]
    near_u, near_c = native_update.anchor_cosines(users, creators)
    anchor = creators[:, :1].transpose(1, 2)
    torch.testing.assert_close(near_u, (users @ anchor).abs().amin((1, 2)), rtol=0, atol=1e-6)
    torch.testing.assert_close(near_c, (creators @ anchor).abs().amin((1, 2)), rtol=0, atol=1e-6)
    for radius in (0.01, 0.05, 0.1):
        compiled = measures.is_polarized(users, creators, radius)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(native_update, "available", lambda device, dtype: False)
            plain = measures.is_polarized(users, creators, radius)
        assert torch.equal(compiled, plain), radius
    assert bool(measures.is_polarized(users, creators, 0.1)[:2].all())  # (the check can say yes)


def test_nan_propagates_and_bad_choices_are_refused(gen):
    """A NaN coordinate makes its vector NaN, as in torch (the engine's guard then names the step); the anchor
    cosines keep a NaN; a creator index outside [0, n) is refused with an IndexError, not read."""
    users, creators, chosen = world(gen, 2, 20, 6, 5)
    users[0, 3, 2] = torch.nan
    dyn = Dynamics(eta_u=0.1, eta_c=0.1).bind(2, 5, CPU, torch.float32)
    new_u, new_v = dyn.update(users, creators, chosen)
    assert bool(torch.isnan(new_u[0, 3]).all()) and bool(torch.isfinite(new_u[1]).all())
    assert bool(torch.isnan(new_v[0, chosen[0, 3]]).all())  # its creator's audience holds the NaN user
    near_u, near_c = native_update.anchor_cosines(users, creators)
    assert bool(torch.isnan(near_u[0])) and bool(torch.isfinite(near_u[1]))
    for bad in (-1, 6):
        wrong = chosen.clone()
        wrong[1, 0] = bad
        with pytest.raises(IndexError, match=r"chosen creators must lie in \[0, 6\)"):
            dyn.update(users, creators, wrong)
