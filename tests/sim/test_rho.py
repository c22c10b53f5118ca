"""The compiled diversity-aware fixed point (rectest.sim.rho): the torch path's iteration to rounding, a fixed point
of the spec's map, each row on its own (companions, blocks and threads do not change it), rows that do not move
left bit for bit."""

import pytest
import torch

from rectest.sim import Policy, random_sphere, rho
from rectest.sim import policies as policies_module

pytestmark = pytest.mark.skipif(
    not rho.available(torch.device("cpu"), torch.float32),
    reason="no C compiler here (or RECTEST_NATIVE=0): the kernel cannot be built, the policies use the torch path",
)


def world(seed: int, R: int = 3, c: int = 37, n: int = 203, d: int = 8):
    gen = torch.Generator().manual_seed(seed)
    users, creators = random_sphere(R, c, d, gen), random_sphere(R, n, d, gen)
    return users @ creators.transpose(1, 2), creators


def probabilities(policy: Policy, scores: torch.Tensor, creators: torch.Tensor, kernel: bool, monkeypatch):
    R, _, n = scores.shape
    with monkeypatch.context() as patch:
        if not kernel:
            patch.setattr(policies_module.rho_kernel, "available", lambda device, dtype: False)
        return policy.bind(R, n, torch.device("cpu"), torch.float32).probabilities(scores, creators)


@pytest.mark.parametrize(
    "params",
    [
        dict(beta=1.0, rho=0.5),
        dict(beta=1.0, rho=[0.0, 1.0, 2.0], tau=0.4),  # a plain replica, fallback rows
        dict(beta=3.0, rho=2.0, k=20),  # truncation: zeros stay zeros
    ],
)
def test_the_kernel_iterates_as_the_torch_path(params, monkeypatch):
    scores, creators = world(1)
    ours = probabilities(Policy(**params), scores, creators, True, monkeypatch)
    theirs = probabilities(Policy(**params), scores, creators, False, monkeypatch)
    assert torch.allclose(ours, theirs, rtol=0, atol=2e-6)
    assert torch.equal(ours == 0, theirs == 0)
    assert torch.allclose(ours.sum(-1), torch.ones(()), atol=1e-5)


def test_rows_that_do_not_move_are_left_bit_for_bit(monkeypatch):
    """A rho = 0 replica and the rows with nothing above tau keep the torch normalisation exactly."""
    scores, creators = world(2)
    policy = Policy(beta=1.0, rho=[0.0, 1.0, 1.0], tau=0.9)
    ours = probabilities(policy, scores, creators, True, monkeypatch)
    theirs = probabilities(policy, scores, creators, False, monkeypatch)
    none = (scores < 0.9).all(-1)  # (R, c) rows with nothing eligible
    assert none[1:].any() and (~none[1:]).any()
    assert torch.equal(ours[0], theirs[0])
    assert torch.equal(ours[none], theirs[none])


def test_the_result_is_the_fixed_point():
    """With a tight tolerance the probabilities are a fixed point of the spec's map, to float32 rounding."""
    scores, creators = world(3, R=2)
    beta, rho_ = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 2.0])
    p = torch.softmax(beta.view(-1, 1, 1) * scores, -1).contiguous()
    rho.iterate(
        p, scores, creators.transpose(1, 2), beta, rho_, torch.ones(2, 37, dtype=torch.bool), 5000, 1e-9
    )
    vbar = p.double() @ creators.double()
    target = torch.softmax(
        beta.view(-1, 1, 1).double()
        * (scores.double() - 2 * rho_.view(-1, 1, 1) * vbar @ creators.double().mT),
        -1,
    )
    assert (target - p.double()).abs().max() < 1e-6


def test_each_row_on_its_own_whatever_its_block_and_threads():
    """A row's result does not depend on the other rows iterated beside it (blocks of 8), on which rows move, or on
    the number of threads; a NaN row is left as it is."""
    scores, creators = world(4)
    vt = creators.transpose(1, 2)
    beta, rho_ = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([1.0, 0.5, 2.0])
    start = torch.softmax(scores, -1)
    start[1, 5] = float("nan")

    def run(rows: slice, moving: torch.Tensor, threads: int) -> torch.Tensor:
        saved = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            p = start[:, rows].clone().contiguous()
            rho.iterate(p, scores[:, rows], vt, beta, rho_, moving, 100, 1e-6)
        finally:
            torch.set_num_threads(saved)
        return p

    everything = torch.ones(3, 37, dtype=torch.bool)
    whole = run(slice(None), everything, 1)
    assert torch.isnan(whole[1, 5]).all()
    assert not torch.isnan(whole[:, 6:]).any()
    some = everything.clone()
    some[:, ::3] = False  # other blocks of 8
    part = run(slice(None), some, 1)
    assert torch.allclose(part[some], whole[some], rtol=0, atol=0, equal_nan=True)
    assert torch.equal(part[~some], start[~some])
    assert torch.equal(run(slice(11, 20), everything[:, 11:20], 1), whole[:, 11:20])
    assert torch.allclose(run(slice(None), everything, 2), whole, rtol=0, atol=0, equal_nan=True)
