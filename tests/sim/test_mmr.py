"""The compiled MMR lists (rectest.sim.mmr): the greedy lists of the spec, first index on ties, and the engine's
trajectories unchanged whether they or the torch lists re-rank."""

import pytest
import torch
from runs import assert_same_runs
from sim_reference import mmr_list

from rectest.sim import Dynamics, Policy, Simulation, State, mmr, random_sphere, select
from rectest.sim import policies as policies_module

pytestmark = pytest.mark.skipif(
    not mmr.available(torch.device("cpu"), torch.float32),
    reason="no C compiler here (or RECTEST_NATIVE=0): the kernel cannot be built, the policies use the torch lists",
)


def kernel_lists(
    scores: torch.Tensor, creators: torch.Tensor, k: list[int], lam: list[float]
) -> torch.Tensor:
    R = scores.shape[0]
    return mmr.lists(
        scores,
        creators.transpose(1, 2).contiguous(),
        torch.tensor(k).view(R, 1, 1),
        torch.tensor(lam).view(R, 1, 1),
    )


@pytest.mark.parametrize("n, d", [(7, 3), (40, 16), (101, 5), (300, 70)])  # n below, at and off 16s; d > 64
def test_lists_equal_the_greedy_loop(n, d):
    gen = torch.Generator().manual_seed(n)
    R, c = 4, 11
    users, creators = random_sphere(R, c, d, gen), random_sphere(R, n, d, gen)
    scores = users @ creators.transpose(1, 2)  # (R, c, n) float32
    k = [1, min(n, 5), min(n, 12), min(n, 40)]  # one pick, short and long lists, every creator (n <= 40)
    lam = [0.5, 0.0, 0.9, 1.0]
    out = kernel_lists(scores, creators, k, lam)  # (R, c, max k)
    assert out.shape == (R, c, max(k))
    for r in range(R):
        v = creators[r].double()
        for j in range(c):
            ref = sorted(mmr_list(scores[r, j].double(), v, k[r], lam[r]))
            assert out[r, j, : k[r]].tolist() == ref, (r, j)
            assert bool((out[r, j, k[r] :] == ref[-1]).all())  # padded with the last


def test_ties_go_to_the_first_index():
    """Scores on a grid of 0.25 and every creator twice: equal values everywhere, the first index wins."""
    gen = torch.Generator().manual_seed(1)
    half = random_sphere(1, 10, 4, gen)
    creators = torch.cat([half, half], 1)  # (1, 20, 4): creator i + 10 is creator i
    scores = (torch.rand(1, 6, 20, generator=gen) * 4).floor() / 4
    for lam in (1.0, 0.5, 0.0):
        out = kernel_lists(scores, creators, [8], [lam])
        for j in range(6):
            assert out[0, j].tolist() == sorted(mmr_list(scores[0, j].double(), creators[0].double(), 8, lam))


def test_first_pick_is_the_first_largest_score_across_lanes_and_tail():
    """The first pick (a vector pass over lanes of 16, then the tail) is the first index of the largest score, as
    a scalar loop: ties across lanes and the tail go to the first index, a largest score in the tail wins, NaN
    never wins (a NaN first score, or nothing but -inf, gives creator 0)."""
    n, inf, nan = 45, float("inf"), float("nan")  # lanes 0-31 vectorised, 32-44 the tail
    rows = torch.full((7, n), -0.5)
    rows[0, [3, 19, 40]] = 0.9  # ties in two lanes and the tail: 3
    rows[1, 40] = 0.9  # the largest in the tail alone
    rows[2, [20, 36]] = 0.9  # a tie between a lane and the tail: 20
    rows[3, 0] = nan  # a NaN first score: 0
    rows[4] = -inf  # nothing but -inf: 0
    rows[5, [1, 33]] = nan
    rows[5, 17] = 0.2  # NaN elsewhere is skipped: 17
    rows[6, 16] = 0.7  # the first element of the second tile: 16
    creators = random_sphere(1, n, 4, torch.Generator().manual_seed(5))
    out = kernel_lists(rows.unsqueeze(0), creators, [1], [0.5])  # (1, 7, 1)
    assert out[0, :, 0].tolist() == [3, 40, 20, 0, 0, 17, 16]


def test_trajectories_equal_the_torch_lists(monkeypatch):
    """The engine's MMR replicas draw the same creators at every step, and log the same measures, with the
    compiled lists as with the torch ones."""
    gen = torch.Generator().manual_seed(2)
    state = State(random_sphere(1, 60, 8, gen), random_sphere(1, 90, 8, gen))
    policy = Policy(beta=[1.0, 2.0, 0.0], k=[3, 10, 6], mmr_lambda=[0.5, 0.0, 0.9])

    def run(native: bool) -> tuple[list[torch.Tensor], Simulation]:
        monkeypatch.setattr(policies_module.mmr_kernel, "available", lambda device, dtype: native)
        sim = Simulation(state, policy, Dynamics(), seeds=[0, 1, 2], log_every=4, chunk_size=25)
        monkeypatch.undo()
        assert all(part.mmr_native == native for _, part in sim.policy.kinds())
        return [sim.step() for _ in range(20)], sim

    (fast, a), (slow, b) = run(True), run(False)
    assert_same_runs((fast, slow), (a, b))


def test_lists_at_real_size_equal_the_torch_lists():
    """ml-100k-like rows (500 of 1,682 creators' worth, d = 16, lists of 20): the torch lists' creators exactly."""
    gen = torch.Generator().manual_seed(3)
    users, creators = random_sphere(2, 40, 16, gen), random_sphere(2, 500, 16, gen)
    scores = users @ creators.transpose(1, 2)
    bound = Policy(beta=1.0, k=20, mmr_lambda=[0.5, 0.8]).bind(2, 500, torch.device("cpu"), torch.float32)
    torch_lists = bound._mmr_list(scores, creators)  # (2, 40, 500) 0/1
    ours = torch.zeros_like(scores).scatter_(-1, kernel_lists(scores, creators, [20, 20], [0.5, 0.8]), 1.0)
    assert torch.equal(ours, torch_lists)


def test_threads_split_the_rows_without_changing_them():
    """Two OpenMP threads (rows split between them, blocks cut at the split) give one thread's lists and draws."""
    gen = torch.Generator().manual_seed(4)
    users, creators = random_sphere(3, 301, 8, gen), random_sphere(3, 70, 8, gen)
    scores = users @ creators.transpose(1, 2)
    k, tau, beta = torch.tensor([[5], [9], [70]]), torch.tensor([[-1.0], [0.1], [0.3]]), torch.tensor([[1.0]])
    uniforms, proposals = (
        torch.rand(3, 301, generator=gen),
        torch.rand(3, 301, 4, generator=gen, dtype=torch.float64),
    )
    saved = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(
                (
                    kernel_lists(scores, creators, [5, 9, 12], [0.5, 0.2, 0.9]),
                    *select.draw_truncated(scores, k, tau, beta, uniforms, proposals),
                )
            )
    finally:
        torch.set_num_threads(saved)
    for one, two in zip(*results, strict=True):
        assert torch.equal(one, two)
